"""The probe: a model scores a few known rows before it may decide anything.

`check_compatible` reads the graph's signature; a graph with the right signature can still be
unfit to score: an export that divides by zero, a transform left out (raw margins instead of
probabilities), both classes' probabilities instead of one score per row. Such a model would
approve or flag live transactions at random (a negative score approves everything, NaN flags
everything), so the scorer and the API refuse to load it and the operator refuses it as a
canary candidate, with the same check (`fraudpipe_common.inference.open_session`).

The probe rows are feature vectors the scorer could compute: each is what the offline feature
store (the code training replays, kept equal to the online one) gives for a transaction after
a made-up history, plus the all-zero vector. They cover the ordinary case and the edges of
what the definitions and the transaction contract allow (`PROBE_CASES` below). The verdict on
the scores is pure (`score_problems`); `probe` runs a session and raises `ModelProbeError`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fraudpipe_common.contracts.transactions import MAX_AMOUNT
from fraudpipe_common.features import FEATURE_NAMES, FeatureInput, OfflineFeatureStore, assemble
from fraudpipe_common.features.definition import AMOUNT_SCALE, MCC_RISK, WINDOWS
from fraudpipe_common.model_artifact import ModelArtifactError, ModelCard

SCORE_MIN, SCORE_MAX = 0.0, 1.0  # the artifact's contract (model_artifact.py)
MAX_DETAIL = 300  # characters of an ONNX Runtime error quoted in a refusal

LARGEST_AMOUNT = str(MAX_AMOUNT)  # the transaction contract's bound
SMALLEST_AMOUNT = str(Decimal(1) / AMOUNT_SCALE)  # its finest decimal (amounts in 1/10,000)
RISKIEST_MCC = max(MCC_RISK, key=MCC_RISK.__getitem__)
# A fixed, ordinary day: the rows never depend on when the probe runs.
PROBE_DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
DAY_S = WINDOWS["24h"]
MINUTE_S = WINDOWS["1m"]


class ModelProbeError(ModelArtifactError):
    """The model does not load, fails to run, or scores the probe rows wrongly."""


@dataclass(frozen=True)
class ProbeRow:
    label: str
    values: tuple[float, ...]  # in FEATURE_NAMES order


class RunnableSession(Protocol):
    """The part of onnxruntime.InferenceSession that the probe uses."""

    def run(self, output_names: Sequence[str], input_feed: dict[str, Any]) -> Sequence[Any]: ...


# -- the rows ------------------------------------------------------------------------------------
def _tx(
    n: int,
    ts: float,
    amount: str,
    *,
    country: str = "DE",
    device: str = "phone",
    merchant: str = "grocer",
    mcc: str = "5411",
    channel: str = "pos",
) -> FeatureInput:
    return FeatureInput(
        f"probe-{n}", "probe-user", ts, amount, country, device, merchant, mcc, channel
    )


def _code(n: int) -> str:
    """A distinct two-letter code per n (countries and devices of a burst)."""
    return chr(ord("A") + n // 26 % 26) + chr(ord("A") + n % 26)


def _after(history: Sequence[FeatureInput], tx: FeatureInput) -> tuple[float, ...]:
    """The row the scorer would compute for `tx` after `history`, in order."""
    store = OfflineFeatureStore()
    for earlier in history:
        store.process(earlier)
    return tuple(assemble(tx, store.process(tx)))


def _typical() -> tuple[float, ...]:
    """A grocery purchase at 14:00 UTC after a month of one such purchase a day."""
    now = PROBE_DAY + 14 * 3600
    history = [_tx(i, now - (30 - i) * DAY_S, f"{38 + i % 7}.50") for i in range(30)]
    return _after(history, _tx(30, now, "42.50"))


def _zeros() -> tuple[float, ...]:
    return (0.0,) * len(FEATURE_NAMES)


def _first_transaction() -> tuple[float, ...]:
    """A user never seen before: no previous transaction, everything new."""
    return _after([], _tx(0, PROBE_DAY + 9 * 3600, "25.00", channel="ecom"))


def _burst() -> tuple[float, ...]:
    """The largest amount, the last of one a second for a whole minute, each of the largest
    amount from another country and device, to the riskiest merchant category, by transfer,
    at 23:59:59 UTC: the window counts and sums and distinct counts at their largest."""
    now = PROBE_DAY + DAY_S - 1
    burst = int(MINUTE_S) - 1
    history = [
        _tx(i, now - (burst - i), LARGEST_AMOUNT, country=_code(i), device=_code(i))
        for i in range(burst)
    ]
    last = _tx(
        burst,
        now,
        LARGEST_AMOUNT,
        country=_code(burst),
        device=_code(burst),
        merchant="new-merchant",
        mcc=RISKIEST_MCC,
        channel="transfer",
    )
    return _after(history, last)


def _outlier(usual: str, now_amount: str) -> Callable[[], tuple[float, ...]]:
    """`now_amount` after a week of `usual` amounts: the amount z-score at its clip."""

    def row() -> tuple[float, ...]:
        now = PROBE_DAY + 3 * 3600
        history = [_tx(i, now - (7 - i) * DAY_S, usual) for i in range(7)]
        return _after(history, _tx(7, now, now_amount, channel="atm", country="BR"))

    return row


PROBE_CASES: tuple[tuple[str, Callable[[], tuple[float, ...]]], ...] = (
    ("typical purchase", _typical),
    ("all zeros", _zeros),
    ("first transaction of a user", _first_transaction),
    ("burst of the largest amounts", _burst),
    ("largest amount after the smallest", _outlier(SMALLEST_AMOUNT, LARGEST_AMOUNT)),
    ("smallest amount after the largest", _outlier(LARGEST_AMOUNT, SMALLEST_AMOUNT)),
)


@functools.cache
def probe_rows() -> tuple[ProbeRow, ...]:
    return tuple(ProbeRow(label, make()) for label, make in PROBE_CASES)


def probe_batch() -> npt.NDArray[np.float32]:
    """The probe rows as the [N, len(FEATURE_NAMES)] float32 matrix a model is fed."""
    return np.array([row.values for row in probe_rows()], dtype=np.float32)


# -- the verdict ---------------------------------------------------------------------------------
def score_problems(output: object, rows: Sequence[ProbeRow]) -> list[str]:
    """What is wrong with a model's output for `rows`: one finite score in [0, 1] per row is
    expected, of shape [N] (or [N, 1], which scoring flattens the same way)."""
    scores = np.asarray(output)
    n = len(rows)
    if scores.dtype.kind != "f":
        return [f"the output is {scores.dtype} {list(scores.shape)}, expected float scores [{n}]"]
    if scores.shape not in ((n,), (n, 1)):
        return [
            f"wrong output shape: {list(scores.shape)} for {n} probe rows, expected [{n}] "
            "(one score per row)"
        ]
    problems = []
    for i, (row, score) in enumerate(zip(rows, scores.reshape(-1).tolist(), strict=True)):
        if not np.isfinite(score):
            problems.append(f"non-finite score {score} at probe row {i} ({row.label})")
        elif not SCORE_MIN <= score <= SCORE_MAX:
            problems.append(
                f"score {score:.6g} outside [{SCORE_MIN:g}, {SCORE_MAX:g}] at probe row {i} "
                f"({row.label})"
            )
    return problems


def refusal(card: ModelCard, problems: Sequence[str]) -> ModelProbeError:
    return ModelProbeError(
        f"model {card.name!r} ({card.model_sha256[:19]}…) fails the probe: "
        + "; ".join(problems)
        + ". Refused before it scores any transaction: export a graph that ONNX Runtime loads "
        "and that gives every valid feature vector one finite score in [0, 1], then push it "
        "again."
    )


def probe(card: ModelCard, session: RunnableSession) -> None:
    """Run the model on the probe rows; raise ModelProbeError naming what went wrong."""
    rows = probe_rows()
    try:
        outputs = session.run([card.io.output_name], {card.io.input_name: probe_batch()})
    except Exception as exc:  # ONNX Runtime raises its own types, any of them
        problem = f"the session fails to run on the probe rows: {detail(exc)}"
        raise refusal(card, [problem]) from exc
    problems = score_problems(outputs[0], rows)
    if problems:
        raise refusal(card, problems)


def detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
