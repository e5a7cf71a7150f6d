"""The operator's own configuration, read from FRAUDPIPE_* environment variables (the chart
sets them)."""

from __future__ import annotations

from importlib.metadata import version

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_operator.builders import Images
from fraudpipe_operator.builders.common import OperatorPods

APP_VERSION = version("fraudpipe-operator")


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUDPIPE_")

    scorer_image: str = Field(
        default=f"fraudpipe/scorer:{APP_VERSION}",
        description="Scorer image used when a FraudPipeline leaves spec.scorer.image empty.",
    )
    api_image: str = Field(default=f"fraudpipe/api:{APP_VERSION}", description="Default API image.")
    producer_image: str = Field(
        default=f"fraudpipe/producer:{APP_VERSION}", description="Default producer image."
    )
    reconcile_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Period of the drift check; a deleted or edited child is back within it.",
    )
    progressing_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Period of reconciliation while a pipeline is not Ready yet (children are "
        "not watched, so this is how quickly a rollout advances from step to step).",
    )
    metrics_port: int = Field(default=8081, description="Port of the operator's /metrics.")
    kafka_bootstrap_override: str | None = Field(
        default=None,
        description=(
            "Where the operator reaches *managed* brokers when it runs outside the cluster "
            "(development, tests): in-cluster Service names do not resolve there. Pods still "
            "get the in-cluster address."
        ),
    )
    topic_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Longest a topic reconciliation may take."
    )
    autoscaling_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Period of the builtin autoscaler: how often it reads each pipeline's lag "
        "(the HorizontalPodAutoscaler's default sync period).",
    )

    operator_namespace: str | None = Field(
        default=None,
        description="The namespace the operator runs in (the chart sets it from the downward "
        "API): the scorers' routing control and the managed broker admit the operator's pods "
        "from this namespace only. Unset (an operator outside the cluster): any namespace.",
    )
    operator_instance: str | None = Field(
        default=None,
        description="The operator's Helm release (its pods' app.kubernetes.io/instance label), "
        "so that only this release's pods are admitted, not another operator's.",
    )

    @property
    def operator_pods(self) -> OperatorPods:
        return OperatorPods(self.operator_namespace, self.operator_instance)

    @property
    def images(self) -> Images:
        return Images(scorer=self.scorer_image, api=self.api_image, producer=self.producer_image)
