"""A model ready to score: the artifact, its ONNX Runtime session and its thresholds.

Shared by the scorer (micro-batches) and the API (synchronous scoring of one transaction);
`open_session` is also the operator's check of a canary candidate, so whatever a scorer would
refuse to load is refused before it gets any traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from fraudpipe_common.explain import (
    ExplainerFormatError,
    ExplainerMismatchError,
    TreeExplainer,
)
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    ModelArtifact,
    check_compatible,
    feature_mismatch,
    load_model,
)
from fraudpipe_common.model_probe import detail, probe, probe_batch, refusal
from fraudpipe_common.oci import sha256_digest
from fraudpipe_common.rules import Thresholds


@dataclass(frozen=True)
class LoadedModel:
    name: str
    digest: str  # the OCI manifest digest when pulled by reference, else the ONNX bytes' sha256
    thresholds: Thresholds
    session: ort.InferenceSession
    input_name: str
    output_name: str
    # Explains its FLAG/BLOCK decisions when the artifact carries an explainer file.
    explainer: TreeExplainer | None = None

    def score(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scores of a [N, 22] float32 matrix, in [0, 1]."""
        (scores,) = self.session.run([self.output_name], {self.input_name: matrix})
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def open_session(artifact: ModelArtifact) -> ort.InferenceSession:
    """The model's session, once ONNX Runtime loads the graph, the graph takes the features
    the scorer computes (`check_compatible`), it scores the probe rows sanely
    (`model_probe.probe`) and its explainer, if any, scores them alike. Raises
    ModelArtifactError (ModelProbeError, IncompatibleModelError) saying what is wrong."""
    return open_model(artifact)[0]


def open_model(artifact: ModelArtifact) -> tuple[ort.InferenceSession, TreeExplainer | None]:
    """`open_session`, and the artifact's explainer once it agrees with the graph."""
    options = ort.SessionOptions()
    # One scorer process per pod, one batch at a time: more threads only fight each other.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            artifact.onnx, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, …)
        problem = (
            f"ONNX Runtime cannot load the graph (a truncated or corrupt file?): {detail(exc)}"
        )
        raise refusal(artifact.card, [problem]) from exc
    check_compatible(artifact.card, FEATURE_NAMES, session)
    probe(artifact.card, session)
    return session, _explainer(artifact, session)


def _explainer(artifact: ModelArtifact, session: ort.InferenceSession) -> TreeExplainer | None:
    if artifact.explainer is None:
        return None
    try:
        explainer = TreeExplainer.from_json(artifact.explainer)
        if explainer.features != artifact.card.features:
            raise ExplainerMismatchError(
                "the explainer names other features than the card: "
                + "; ".join(feature_mismatch(explainer.features, artifact.card.features))
            )
        rows = probe_batch()
        (scores,) = session.run([artifact.card.io.output_name], {artifact.card.io.input_name: rows})
        explainer.check_against(rows, np.asarray(scores).reshape(-1))
    except (ExplainerFormatError, ExplainerMismatchError) as exc:
        raise refusal(artifact.card, [str(exc)]) from exc
    return explainer


def prepare(
    artifact: ModelArtifact, *, flag: float | None = None, block: float | None = None
) -> LoadedModel:
    session, explainer = open_model(artifact)
    card = artifact.card
    digest = (
        artifact.reference.digest
        if artifact.reference is not None and artifact.reference.digest
        else sha256_digest(artifact.onnx)
    )
    thresholds = Thresholds(
        flag=card.thresholds.flag if flag is None else flag,
        block=card.thresholds.block if block is None else block,
    )
    return LoadedModel(
        card.name, digest, thresholds, session, card.io.input_name, card.io.output_name, explainer
    )


async def load(
    ref: str,
    *,
    flag: float | None = None,
    block: float | None = None,
    plain_http: bool | None = None,
) -> LoadedModel:
    return prepare(await load_model(ref, plain_http=plain_http), flag=flag, block=block)
