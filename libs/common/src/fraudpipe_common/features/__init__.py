"""One feature definition, computed offline (training, over a replayed stream) and online
(scorer and API, in Redis), with a property test proving the two agree."""

from fraudpipe_common.features.definition import (
    FEATURE_NAMES,
    STATEFUL_FEATURES,
    STATELESS_FEATURES,
    FeatureInput,
    assemble,
    stateless_features,
)
from fraudpipe_common.features.offline import OfflineFeatureStore
from fraudpipe_common.features.online import OnlineFeatureStore

__all__ = [
    "FEATURE_NAMES",
    "STATEFUL_FEATURES",
    "STATELESS_FEATURES",
    "FeatureInput",
    "OfflineFeatureStore",
    "OnlineFeatureStore",
    "assemble",
    "stateless_features",
]
