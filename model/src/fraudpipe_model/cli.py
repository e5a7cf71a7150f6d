"""`fraudpipe-model`: train, evaluate, export, push, pull and inspect fraud models.

Only argument parsing, files and printing live here; the work is done by the modules it calls.
Exit status: 0 done, 1 failed (the message says why and what to do), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import joblib  # type: ignore[import-untyped]

from fraudpipe_common.explain import TreeExplainer
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    CARD_FILE,
    MODEL_FILE,
    Family,
    ModelArtifact,
    ModelArtifactError,
    ModelCard,
    check_compatible,
    pull_model,
    push_model,
    read_model_dir,
    write_model_dir,
)
from fraudpipe_common.oci import OciError, Reference, sha256_digest
from fraudpipe_model.dataset import DatasetSpec, load_dataset
from fraudpipe_model.evaluate import (
    evaluate_scores,
    format_table,
    plot_pr_curves,
    quality_bar_failures,
)
from fraudpipe_model.explainer import export_explainer
from fraudpipe_model.export import export_onnx
from fraudpipe_model.families import DEFAULT_FAMILY, Estimator, family_of
from fraudpipe_model.runtime import OnnxModel, ParityError, check_parity
from fraudpipe_model.train import (
    EXPLAINER_CHECK_ROWS,
    PARITY_ROWS,
    VALIDATION_FRACTION,
    train_model,
)

ESTIMATOR_FILE = "estimator.joblib"  # the fitted scikit-learn model, for `export` only
DEFAULT_CACHE = Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe"))


class CliError(Exception):
    """Reported as `fraudpipe-model: error: <message>` with exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (CliError, ModelArtifactError, OciError, ParityError, ValueError, OSError) as exc:
        print(f"fraudpipe-model: error: {exc}", file=sys.stderr)
        return 1
    return 0


# -- commands -----------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> None:
    if args.from_archive:
        from fraudpipe_model.archived import load_archive_dataset

        print(f"reading {args.from_archive} …", file=sys.stderr)
        dataset = load_archive_dataset(args.from_archive)
    else:
        spec = _spec(args)
        print(f"generating {spec.describe()} …", file=sys.stderr)
        dataset = load_dataset(spec, _cache_dir(args))
    print(
        f"training {args.family} on {len(dataset)} rows ({dataset.positives} fraud) …",
        file=sys.stderr,
    )
    trained = train_model(
        args.family,
        dataset,
        seed=args.seed,
        name=args.name,
        validation_fraction=args.validation_fraction,
        threads=args.threads,
    )
    write_model_dir(args.out, trained.artifact)
    joblib.dump(trained.estimator, args.out / ESTIMATOR_FILE)
    print(_summary(trained.artifact.card, args.out))


def _export(args: argparse.Namespace) -> None:
    directory: Path = args.model_dir
    try:  # the card only: export may repair a missing or damaged graph
        current = ModelCard.from_json((directory / CARD_FILE).read_bytes())
    except FileNotFoundError as exc:
        raise CliError(
            f"{exc.filename} is missing: export works on a directory train wrote"
        ) from exc
    estimator = _load_estimator(directory)
    onnx_bytes = export_onnx(estimator, len(current.features))
    spec = DatasetSpec(rows=args.parity_rows, seed=args.parity_seed, users=args.users)
    rows = load_dataset(spec, _cache_dir(args)).features
    onnx_model = OnnxModel(onnx_bytes)
    diff = check_parity(onnx_model, estimator, rows)
    explainer = export_explainer(estimator, current.features)
    checked = rows[:EXPLAINER_CHECK_ROWS]
    TreeExplainer.from_json(explainer).check_against(checked, onnx_model.scores(checked))
    card = current.model_copy(
        update={
            "model_sha256": sha256_digest(onnx_bytes),
            "explainer_sha256": sha256_digest(explainer),
            "export_max_abs_diff": diff,
        }
    )
    write_model_dir(directory, ModelArtifact(onnx_bytes, card, explainer=explainer))
    print(
        f"exported {directory / MODEL_FILE}: ONNX and scikit-learn scores agree within "
        f"{diff:.3g} on {len(rows)} rows ({spec.describe()})"
    )


def _evaluate(args: argparse.Namespace) -> None:
    artifacts = [read_model_dir(d) for d in args.model_dirs]
    for artifact in artifacts:
        check_compatible(artifact.card, FEATURE_NAMES)
    spec = _spec(args)
    print(f"generating held-out {spec.describe()} …", file=sys.stderr)
    held_out = load_dataset(spec, _cache_dir(args))
    evaluations = [
        evaluate_scores(
            a.card, held_out.labels, held_out.scenarios, OnnxModel(a.onnx).scores(held_out.features)
        )
        for a in artifacts
    ]
    print(format_table(evaluations, spec.describe()))
    if args.png:
        plot_pr_curves(evaluations, args.png, f"held-out: seed {spec.seed}, {len(held_out)} rows")
        print(f"wrote {args.png}")
    if args.require_quality_bar:
        failed = quality_bar_failures(evaluations)
        if failed:
            raise CliError(f"quality bar not met by: {', '.join(failed)}")


def _push(args: argparse.Namespace) -> None:
    artifact = read_model_dir(args.model_dir)
    check_compatible(artifact.card, FEATURE_NAMES, OnnxModel(artifact.onnx).session)
    target = Reference.parse(args.target)
    if target.digest:
        raise CliError(f"{args.target}: push to registry/repository[:tag], without a digest")
    ref = asyncio.run(
        push_model(
            target.registry,
            target.repository,
            artifact,
            tag=target.tag,
            plain_http=args.plain_http,
        )
    )
    print(ref)


def _pull(args: argparse.Namespace) -> None:
    artifact = asyncio.run(pull_model(args.reference, plain_http=args.plain_http))
    check_compatible(artifact.card, FEATURE_NAMES, OnnxModel(artifact.onnx).session)
    write_model_dir(args.out, artifact)
    print(f"{artifact.reference}: digests verified, inputs match; wrote {args.out}")


def _inspect(args: argparse.Namespace) -> None:
    if Path(args.model).is_dir():
        card = read_model_dir(Path(args.model)).card
    elif "@sha256:" not in args.model:
        raise CliError(
            f"{args.model}: no such model directory; for a pushed model give "
            "registry/repository@sha256:…"
        )
    else:
        card = asyncio.run(pull_model(args.model, plain_http=args.plain_http)).card
    if args.json:
        sys.stdout.write(card.to_json().decode())
    else:
        print(_summary(card, None))


# -- helpers ------------------------------------------------------------------------------------
def _summary(card: ModelCard, directory: Path | None) -> str:
    v = card.validation
    lines = [
        f"name         {card.name}",
        f"family       {card.family}",
        f"created      {card.created.isoformat()}",
        f"model        {card.model_sha256}",
        f"features     {len(card.features)}: {', '.join(card.features)}",
        f"input        {card.io.input_name} float32 [N, {len(card.features)}]",
        f"output       {card.io.output_name} float32 [N] in [0, 1]: {card.score.transform}",
        f"thresholds   FLAG >= {card.thresholds.flag:.6g}, BLOCK >= {card.thresholds.block:.6g}",
        f"rule         {card.thresholds.rule}",
        f"validation   {v.rows} rows, {v.positives} fraud: PR-AUC {v.pr_auc:.3f}, "
        f"recall at 1% FPR {v.recall_at_1pct_fpr:.3f}",
        f"  FLAG       precision {v.flag_precision:.3f}, recall {v.flag_recall:.3f}, "
        f"FPR {v.flag_fpr:.4f}",
        f"  BLOCK      precision {v.block_precision:.3f}, recall {v.block_recall:.3f}, "
        f"FPR {v.block_fpr:.4f}",
        f"training     {card.training_data.rows} rows, {card.training_data.positives} fraud, "
        f"{card.training_data.sha256}",
        f"source       {card.training_data.source}",
        f"export       ONNX vs scikit-learn max |diff| {card.export_max_abs_diff:.3g}",
        "versions     " + ", ".join(f"{k} {v}" for k, v in card.versions.items()),
    ]
    if directory is not None:
        lines.append(f"written to   {directory}")
    return "\n".join(lines)


def _spec(args: argparse.Namespace) -> DatasetSpec:
    if args.rows <= 0:
        raise CliError(f"--rows must be positive, got {args.rows}")
    if not 0.0 < args.fraud_rate < 0.5:
        raise CliError(f"--fraud-rate must be in (0, 0.5), got {args.fraud_rate}")
    if args.warmup < 0:
        raise CliError(f"--warmup must not be negative, got {args.warmup}")
    return DatasetSpec(
        rows=args.rows,
        seed=args.seed,
        fraud_rate=args.fraud_rate,
        users=args.users,
        warmup=args.warmup,
    )


def _cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else DEFAULT_CACHE / "datasets"


def _load_estimator(directory: Path) -> Estimator:
    path = directory / ESTIMATOR_FILE
    if not path.exists():
        raise CliError(
            f"{path} is missing: export needs the fitted estimator that train writes; "
            "a pulled model holds only its ONNX graph"
        )
    # joblib runs pickle: only ever load the file `train` wrote into your own directory.
    estimator: Estimator = joblib.load(path)
    family_of(estimator)
    return estimator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudpipe-model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def data_options(
        command: argparse.ArgumentParser, rows: int, seed: int, warmup: int = 0
    ) -> None:
        command.add_argument("--rows", type=int, default=rows, help="transactions (%(default)s)")
        command.add_argument(
            "--warmup",
            type=int,
            default=warmup,
            help="rows replayed into the feature state first, not used (%(default)s)",
        )
        command.add_argument("--seed", type=int, default=seed, help="stream seed (%(default)s)")
        command.add_argument(
            "--fraud-rate", type=float, default=0.01, help="share of fraud rows (%(default)s)"
        )
        command.add_argument(
            "--users", type=int, default=10_000, help="simulated users (%(default)s)"
        )
        command.add_argument(
            "--no-cache",
            action="store_true",
            help=f"do not cache datasets in {DEFAULT_CACHE / 'datasets'}",
        )

    train = commands.add_parser("train", help="train a model, export ONNX, write its card")
    train.add_argument(
        "--family", choices=get_args(Family), default=DEFAULT_FAMILY, help="(%(default)s)"
    )
    data_options(train, rows=300_000, seed=1)
    train.add_argument(
        "--from-archive",
        metavar="S3_URI",
        help="train on s3://bucket/prefix (`fraudpipe-api archive`): archived decisions' "
        "features joined with the archived labels, instead of a generated stream (the "
        "generator's options are then unused; S3 settings from AWS_* variables)",
    )
    train.add_argument(
        "--validation-fraction",
        type=float,
        default=VALIDATION_FRACTION,
        help="last share of the rows, held back to choose thresholds (%(default)s)",
    )
    train.add_argument("--name", help="model name in the card (fraudpipe-<family>)")
    train.add_argument("--threads", type=int, help="OpenMP threads (scikit-learn's default)")
    train.add_argument("--out", type=Path, required=True, help="directory to write")
    train.set_defaults(run=_train)

    export = commands.add_parser(
        "export", help="re-export ONNX from a trained estimator, with a parity check"
    )
    export.add_argument("model_dir", type=Path)
    export.add_argument("--parity-rows", type=int, default=PARITY_ROWS)
    export.add_argument("--parity-seed", type=int, default=99)
    export.add_argument("--users", type=int, default=10_000)
    export.add_argument("--no-cache", action="store_true")
    export.set_defaults(run=_export)

    evaluate = commands.add_parser("evaluate", help="measure models on a held-out stream")
    evaluate.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    data_options(evaluate, rows=200_000, seed=2, warmup=100_000)
    evaluate.add_argument("--png", type=Path, help="write the precision-recall curves here")
    evaluate.add_argument(
        "--require-quality-bar",
        action="store_true",
        help="fail unless every gradient_boosting model meets the bar (IsolationForest is "
        "reported, not judged)",
    )
    evaluate.set_defaults(run=_evaluate)

    push = commands.add_parser("push", help="push ONNX + card as one OCI artifact")
    push.add_argument("model_dir", type=Path)
    push.add_argument("target", help="registry/repository[:tag]")
    push.set_defaults(run=_push)

    pull = commands.add_parser("pull", help="pull by digest, verify, check inputs, write files")
    pull.add_argument("reference", help="registry/repository@sha256:…")
    pull.add_argument("--out", type=Path, required=True)
    pull.set_defaults(run=_pull)

    inspect = commands.add_parser("inspect", help="print a model card")
    inspect.add_argument("model", help="a model directory or registry/repository@sha256:…")
    inspect.add_argument("--json", action="store_true", help="the card as JSON")
    inspect.set_defaults(run=_inspect)

    for command in (push, pull, inspect):
        command.add_argument(
            "--plain-http",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="plain HTTP (default: only for loopback registries)",
        )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
