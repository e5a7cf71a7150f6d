"""The FraudPipeline API types. The CRD in crds/ is generated from these models."""

from fraudpipe_operator.models.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    FraudPipeline,
    FraudPipelineSpec,
    FraudPipelineStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "FraudPipeline",
    "FraudPipelineSpec",
    "FraudPipelineStatus",
]
