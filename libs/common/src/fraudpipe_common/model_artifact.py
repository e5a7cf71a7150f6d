"""The model artifact: one ONNX graph plus its model card, pushed as one OCI artifact.

Layout (an OCI image manifest, artifactType `application/vnd.fraudpipe.model.v1`):
- layer `application/vnd.fraudpipe.model.onnx`: the ONNX graph. One float32 input of shape
  [N, len(card.features)] taking features in card order, one float32 output of shape [N] with
  a fraud score in [0, 1] (higher is riskier), whatever the model family: the family-specific
  mapping to [0, 1] is part of the graph, so a scorer never needs to know it.
- layer `application/vnd.fraudpipe.model.card.v1+json`: the `ModelCard` below.
- optional layer `application/vnd.fraudpipe.model.explainer.v1+json`: the trees with their
  covers, for exact TreeSHAP explanations (fraudpipe_common.explain.trees); the card names its
  SHA-256 when there is one. A model without it scores the same and explains nothing.
On disk the same files are `model.onnx`, `card.json` and `explainer.json` in one directory.

The card names the SHA-256 of the ONNX bytes, so a card cannot be paired with another graph,
and everything pulled is verified against the digests it was asked for by. `check_compatible`
refuses a model whose inputs do not match the features a scorer computes, naming the mismatch.
This module needs no onnxruntime: graph checks take a session object the caller already has.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudpipe_common.oci import Blob as OciBlob
from fraudpipe_common.oci import (
    OciClient,
    Reference,
    sha256_digest,
)

ARTIFACT_TYPE = "application/vnd.fraudpipe.model.v1"
ONNX_MEDIA_TYPE = "application/vnd.fraudpipe.model.onnx"
CARD_MEDIA_TYPE = "application/vnd.fraudpipe.model.card.v1+json"
EXPLAINER_MEDIA_TYPE = "application/vnd.fraudpipe.model.explainer.v1+json"
MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
EXPLAINER_FILE = "explainer.json"
TITLE_ANNOTATION = "org.opencontainers.image.title"

Family = Literal["isolation_forest", "gradient_boosting"]


class ModelArtifactError(ValueError):
    """A model artifact is malformed or does not fit; the message says what and what to do."""


class IncompatibleModelError(ModelArtifactError):
    """The model's inputs do not match the features the caller computes."""


class _Card(BaseModel):
    # Unknown fields are ignored so that a v1 reader can read a v1 card with later additions;
    # breaking changes bump card_version and the card media type.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ModelIO(_Card):
    input_name: str = "features"
    input_dtype: Literal["float32"] = "float32"
    output_name: str = "fraud_score"


class ScoreSemantics(_Card):
    """What the output means. The graph already applies `transform`; it is documentation."""

    minimum: float = 0.0
    maximum: float = 1.0
    higher_is_riskier: Literal[True] = True
    transform: str


class Thresholds(_Card):
    """Decision thresholds on the score: `score >= block` is BLOCK, else `score >= flag` is FLAG."""

    flag: float = Field(ge=0.0, le=1.0)
    block: float = Field(ge=0.0, le=1.0)
    rule: str

    @model_validator(mode="after")
    def _block_is_stricter(self) -> Thresholds:
        if self.block < self.flag:
            raise ValueError(f"block threshold {self.block} is below flag threshold {self.flag}")
        return self


class Metrics(_Card):
    """Measured on rows the model did not train on (`split` says which)."""

    split: str
    rows: int = Field(ge=0)
    positives: int = Field(ge=0)
    pr_auc: float
    recall_at_1pct_fpr: float
    flag_precision: float
    flag_recall: float
    flag_fpr: float
    block_precision: float
    block_recall: float
    block_fpr: float


class TrainingData(_Card):
    source: str  # how to regenerate it, e.g. the generator, seeds and sizes
    sha256: str  # of the feature matrix, labels and feature names (see fraudpipe_model.dataset)
    rows: int = Field(ge=0)
    positives: int = Field(ge=0)
    validation_rows: int = Field(ge=0)


class ModelCard(_Card):
    card_version: Literal[1] = 1
    name: str
    family: Family
    created: dt.datetime
    features: tuple[str, ...] = Field(min_length=1)
    io: ModelIO = ModelIO()
    score: ScoreSemantics
    thresholds: Thresholds
    validation: Metrics
    training_data: TrainingData
    model_sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    explainer_sha256: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    export_max_abs_diff: float = Field(ge=0.0)  # ONNX vs scikit-learn scores, at export
    versions: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        duplicates = sorted({f for f in self.features if self.features.count(f) > 1})
        if duplicates:
            raise ValueError(f"feature names repeat: {duplicates}")
        if self.created.tzinfo is None:
            raise ValueError("created must carry a time zone (UTC)")
        return self

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelCard:
        try:
            return cls.model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise ModelArtifactError(f"invalid model card: {exc}") from exc


@dataclass(frozen=True)
class ModelArtifact:
    onnx: bytes
    card: ModelCard
    reference: Reference | None = None  # digest-pinned, when it came from a registry
    explainer: bytes | None = None  # explainer.json, when the card names one


# -- compatibility ------------------------------------------------------------------------------
class TensorInfo(Protocol):
    """What onnxruntime's NodeArg offers (name, shape, type such as 'tensor(float)')."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> Sequence[int | str | None]: ...
    @property
    def type(self) -> str: ...


class SessionLike(Protocol):
    """The part of onnxruntime.InferenceSession that the checks read."""

    def get_inputs(self) -> Sequence[TensorInfo]: ...
    def get_outputs(self) -> Sequence[TensorInfo]: ...


def feature_mismatch(model: Sequence[str], computed: Sequence[str]) -> list[str]:
    """Human-readable differences between the model's inputs and the computed features."""
    problems = []
    missing = [f for f in model if f not in computed]
    extra = [f for f in computed if f not in model]
    if missing:
        problems.append(f"the model needs features that are not computed: {missing}")
    if extra:
        problems.append(f"features computed that the model does not take: {extra}")
    if not missing and not extra and list(model) != list(computed):
        at = next(i for i, (m, c) in enumerate(zip(model, computed, strict=True)) if m != c)
        problems.append(
            f"same features in a different order: position {at} is {model[at]!r} in the "
            f"model but {computed[at]!r} in the computed vector"
        )
    return problems


def check_compatible(
    card: ModelCard, computed_features: Sequence[str], session: SessionLike | None = None
) -> None:
    """Raise IncompatibleModelError unless the model takes exactly `computed_features`, in
    order; with a session, also check that the graph is what the card describes."""
    problems = feature_mismatch(card.features, computed_features)
    if session is not None:
        problems += _graph_mismatch(card, session)
    if problems:
        raise IncompatibleModelError(
            f"model {card.name!r} ({card.model_sha256[:19]}…) is incompatible: "
            + "; ".join(problems)
            + ". Train and push a model for this feature set (fraudpipe-model train), "
            "or run a scorer version that computes the model's features."
        )


def _graph_mismatch(card: ModelCard, session: SessionLike) -> list[str]:
    problems = []
    inputs = list(session.get_inputs())
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        problems.append(f"the ONNX graph has {len(inputs)} inputs {names}, expected exactly 1")
    by_name = {i.name: i for i in inputs}
    tensor = by_name.get(card.io.input_name)
    if tensor is None:
        problems.append(
            f"the ONNX graph has no input {card.io.input_name!r} (it has {list(by_name)})"
        )
    else:
        if tensor.type != "tensor(float)":
            problems.append(f"input {tensor.name!r} is {tensor.type}, expected tensor(float)")
        shape = list(tensor.shape)
        width = shape[1] if len(shape) == 2 else None
        if len(shape) != 2:
            problems.append(f"input {tensor.name!r} has shape {shape}, expected [batch, width]")
        elif isinstance(width, int) and width != len(card.features):
            problems.append(
                f"input {tensor.name!r} is {width} wide but the card lists "
                f"{len(card.features)} features"
            )
    outputs = {o.name for o in session.get_outputs()}
    if card.io.output_name not in outputs:
        problems.append(
            f"the ONNX graph has no output {card.io.output_name!r} (it has {sorted(outputs)})"
        )
    return problems


# -- files ----------------------------------------------------------------------------------------
def verify_pair(onnx: bytes, card: ModelCard, explainer: bytes | None = None) -> None:
    """The card must describe these very ONNX bytes, and the explainer it names, if any."""
    actual = sha256_digest(onnx)
    if actual != card.model_sha256:
        raise ModelArtifactError(
            f"the card describes ONNX bytes {card.model_sha256} but the model hashes to "
            f"{actual}: the card and the graph do not belong together"
        )
    if card.explainer_sha256 is None:
        if explainer is not None:
            raise ModelArtifactError("an explainer came with a card that names none")
        return
    if explainer is None:
        raise ModelArtifactError(
            f"the card names an explainer ({card.explainer_sha256}) but none came with it"
        )
    if (found := sha256_digest(explainer)) != card.explainer_sha256:
        raise ModelArtifactError(
            f"the card describes explainer bytes {card.explainer_sha256} but the explainer "
            f"hashes to {found}: they do not belong together"
        )


def write_model_dir(directory: Path, artifact: ModelArtifact) -> None:
    verify_pair(artifact.onnx, artifact.card, artifact.explainer)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(artifact.onnx)
    (directory / CARD_FILE).write_bytes(artifact.card.to_json())
    if artifact.explainer is not None:
        (directory / EXPLAINER_FILE).write_bytes(artifact.explainer)
    else:
        (directory / EXPLAINER_FILE).unlink(missing_ok=True)


def read_model_dir(directory: Path) -> ModelArtifact:
    try:
        onnx = (directory / MODEL_FILE).read_bytes()
        card_bytes = (directory / CARD_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise ModelArtifactError(
            f"{directory} is not a model directory: {exc.filename} is missing "
            f"(expected {MODEL_FILE} and {CARD_FILE})"
        ) from exc
    card = ModelCard.from_json(card_bytes)
    explainer = None
    if card.explainer_sha256 is not None:
        try:
            explainer = (directory / EXPLAINER_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise ModelArtifactError(
                f"{directory}: the card names an explainer but {EXPLAINER_FILE} is missing"
            ) from exc
    verify_pair(onnx, card, explainer)
    return ModelArtifact(onnx, card, explainer=explainer)


# -- registry -------------------------------------------------------------------------------------
async def push_model(
    registry: str,
    repository: str,
    artifact: ModelArtifact,
    *,
    tag: str | None = None,
    plain_http: bool | None = None,
) -> Reference:
    """Push the ONNX graph and its card as one artifact; returns `registry/repo@sha256:…`."""
    verify_pair(artifact.onnx, artifact.card, artifact.explainer)
    card = artifact.card
    layers = [
        OciBlob(artifact.onnx, ONNX_MEDIA_TYPE, {TITLE_ANNOTATION: MODEL_FILE}),
        OciBlob(card.to_json(), CARD_MEDIA_TYPE, {TITLE_ANNOTATION: CARD_FILE}),
    ]
    if artifact.explainer is not None:
        layers.append(
            OciBlob(artifact.explainer, EXPLAINER_MEDIA_TYPE, {TITLE_ANNOTATION: EXPLAINER_FILE})
        )
    annotations = {
        "org.opencontainers.image.created": card.created.isoformat(),
        "io.fraudpipe.model.name": card.name,
        "io.fraudpipe.model.family": card.family,
    }
    async with OciClient(registry, plain_http=plain_http) as client:
        return await client.push_artifact(
            repository, ARTIFACT_TYPE, layers, tag=tag, annotations=annotations
        )


async def pull_model(
    reference: Reference | str, *, plain_http: bool | None = None
) -> ModelArtifact:
    """Pull by digest; every byte is verified against the digests before it is returned."""
    ref = Reference.parse(reference) if isinstance(reference, str) else reference
    if ref.digest is None:
        raise ModelArtifactError(
            f"{ref}: models are pulled by digest only, use registry/repository@sha256:… "
            "(fraudpipe-model push prints it)"
        )
    async with OciClient(ref.registry, plain_http=plain_http) as client:
        manifest, layers = await client.pull_artifact(ref)
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise ModelArtifactError(
            f"{ref} is not a fraudpipe model: artifactType is "
            f"{manifest.get('artifactType')!r}, expected {ARTIFACT_TYPE!r}"
        )
    by_type = _layers_by_media_type(ref, manifest, layers)
    card = ModelCard.from_json(by_type[CARD_MEDIA_TYPE])
    onnx = by_type[ONNX_MEDIA_TYPE]
    explainer = by_type.get(EXPLAINER_MEDIA_TYPE)
    verify_pair(onnx, card, explainer)
    return ModelArtifact(onnx, card, ref, explainer)


async def load_model(ref_or_path: str, *, plain_http: bool | None = None) -> ModelArtifact:
    """A model from `registry/repo@sha256:…`, or from a local directory when one exists."""
    path = Path(ref_or_path)
    if await asyncio.to_thread(path.is_dir):
        return await asyncio.to_thread(read_model_dir, path)
    return await pull_model(ref_or_path, plain_http=plain_http)


def _layers_by_media_type(
    ref: Reference, manifest: dict[str, Any], layers: list[bytes]
) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for desc, data in zip(manifest.get("layers", []), layers, strict=True):
        media_type = desc.get("mediaType")
        if media_type in found:
            raise ModelArtifactError(f"{ref} has more than one {media_type} layer")
        found[media_type] = data
    for wanted in (ONNX_MEDIA_TYPE, CARD_MEDIA_TYPE):
        if wanted not in found:
            raise ModelArtifactError(f"{ref} has no {wanted} layer (layers: {sorted(found)})")
    return found
