"""`fraudpipe-model` end to end on small data: files, messages and exit codes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fraudpipe_common.explain import UNITS
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.inference import open_model
from fraudpipe_common.model_artifact import (
    CARD_FILE,
    EXPLAINER_FILE,
    MODEL_FILE,
    ModelArtifact,
    ModelArtifactError,
    ModelCard,
    push_model,
    read_model_dir,
)
from fraudpipe_common.model_probe import ModelProbeError
from fraudpipe_common.oci import sha256_digest
from fraudpipe_model.cli import ESTIMATOR_FILE, _load_estimator, main
from fraudpipe_model.dataset import DatasetSpec, build_dataset
from fraudpipe_model.families import sklearn_scores
from fraudpipe_model.runtime import PARITY_TOLERANCE, OnnxModel

SMALL = ["--rows", "20000", "--seed", "5", "--no-cache"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    made = {}
    for family in ("gradient_boosting", "isolation_forest"):
        out = root / family
        assert main(["train", "--family", family, *SMALL, "--threads", "1", "--out", str(out)]) == 0
        made[family] = out
    return made


def copy_of(model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model, tmp_path / model.name))


def test_train_writes_graph_card_and_estimator_with_the_training_data_hash(
    models: dict[str, Path],
) -> None:
    for family, directory in models.items():
        assert {p.name for p in directory.iterdir()} == {
            MODEL_FILE,
            CARD_FILE,
            EXPLAINER_FILE,
            ESTIMATOR_FILE,
        }
        card = read_model_dir(directory).card  # also verifies the pair
        assert card.family == family
        assert card.features == FEATURE_NAMES
        assert card.export_max_abs_diff <= PARITY_TOLERANCE
        train_rows, _ = build_dataset(DatasetSpec(rows=20000, seed=5)).split(0.2)
        assert card.training_data.sha256 == train_rows.sha256()
        assert card.training_data.rows == 16000
        assert card.validation.rows == 4000
        assert card.validation.flag_fpr <= 0.01
        assert card.validation.block_fpr <= 0.001


def test_inspect_prints_the_card(
    models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = models["gradient_boosting"]
    assert main(["inspect", str(directory)]) == 0
    text = capsys.readouterr().out
    card = read_model_dir(directory).card
    assert card.model_sha256 in text
    assert f"FLAG >= {card.thresholds.flag:.6g}" in text
    assert main(["inspect", "--json", str(directory)]) == 0
    assert ModelCard.model_validate(json.loads(capsys.readouterr().out)) == card


def test_export_rebuilds_a_damaged_graph_from_the_estimator(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_of(models["isolation_forest"], tmp_path)
    (directory / MODEL_FILE).write_bytes(b"not a graph")
    assert main(["export", str(directory), "--parity-rows", "10000", "--no-cache"]) == 0
    assert "agree within" in capsys.readouterr().out
    artifact = read_model_dir(directory)  # the card was updated to the new graph
    rows = build_dataset(DatasetSpec(rows=2000, seed=8)).features
    estimator = _load_estimator(directory)
    onnx_scores = OnnxModel(artifact.onnx).scores(rows)
    assert np.max(np.abs(onnx_scores - sklearn_scores(estimator, rows))) <= PARITY_TOLERANCE


def test_evaluate_prints_a_table_per_model_and_writes_a_png(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "pr.png"
    dirs = [str(models["gradient_boosting"]), str(models["isolation_forest"])]
    argv = ["evaluate", *dirs, "--rows", "20000", "--warmup", "5000", "--seed", "6"]
    assert main([*argv, "--no-cache", "--png", str(png)]) == 0
    table = capsys.readouterr().out
    for label in ("PR-AUC", "recall at 1% FPR", "FLAG precision", "BLOCK recall"):
        assert label in table
    for scenario in ("card_testing", "account_takeover", "velocity_burst", "amount_outlier"):
        assert f"recall@FLAG {scenario}" in table
    assert "gradient_boosting (" in table
    assert "isolation_forest (" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_fail_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--rows", "0", "--out", "/nonexistent/x"]) == 1
    assert "--rows must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["train", "--family", "random_forest", "--out", "x"])
    assert usage.value.code == 2


def test_export_without_an_estimator_says_why(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_of(models["gradient_boosting"], tmp_path)
    (directory / ESTIMATOR_FILE).unlink()
    assert main(["export", str(directory)]) == 1
    assert "a pulled model holds only its ONNX graph" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_push_to_an_unreachable_registry_exits_non_zero(
    models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{_closed_port()}/models/fraud:v1"
    assert main(["push", str(models["gradient_boosting"]), target]) == 1
    assert "cannot reach the OCI registry" in capsys.readouterr().err


@pytest.mark.registry
def test_push_prints_a_digest_reference_and_pull_writes_identical_files(
    models: dict[str, Path],
    oci_registry: str,
    oci_repository: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = models["gradient_boosting"]
    assert main(["push", str(source), f"{oci_registry}/{oci_repository}:v1"]) == 0
    reference = capsys.readouterr().out.strip()
    assert reference.startswith(f"{oci_registry}/{oci_repository}@sha256:")
    assert main(["pull", reference, "--out", str(tmp_path / "pulled")]) == 0
    assert "digests verified" in capsys.readouterr().out
    for name in (MODEL_FILE, CARD_FILE):
        assert (tmp_path / "pulled" / name).read_bytes() == (source / name).read_bytes()
    assert main(["inspect", reference]) == 0
    assert read_model_dir(source).card.model_sha256 in capsys.readouterr().out


@pytest.mark.registry
def test_pull_by_tag_is_refused(
    oci_registry: str, oci_repository: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", f"{oci_registry}/{oci_repository}:v1", "--out", "unused"]) == 1
    assert "by digest only" in capsys.readouterr().err


@pytest.mark.registry
async def test_pull_refuses_a_model_whose_inputs_do_not_match_the_features(
    models: dict[str, Path],
    oci_registry: str,
    oci_repository: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    artifact = read_model_dir(models["gradient_boosting"])
    swapped = (FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:])
    card = artifact.card.model_copy(update={"features": swapped})
    ref = await push_model(
        oci_registry,
        oci_repository,
        ModelArtifact(artifact.onnx, card, explainer=artifact.explainer),
    )
    out = tmp_path / "refused"
    assert await _run_in_thread(["pull", str(ref), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "is incompatible" in error
    assert "position 0 is 'amount_log' in the model but 'amount'" in error
    assert not out.exists()  # nothing written for a refused model


async def _run_in_thread(argv: list[str]) -> int:
    # The CLI runs its own event loop; keep it off the test's loop.
    import asyncio

    return await asyncio.to_thread(main, argv)


def test_a_directory_holding_no_onnx_graph_is_refused_before_pushing(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_of(models["gradient_boosting"], tmp_path)
    garbage = b"not an onnx graph"
    card = read_model_dir(directory).card.model_copy(
        update={"model_sha256": sha256_digest(garbage)}
    )
    (directory / MODEL_FILE).write_bytes(garbage)
    (directory / CARD_FILE).write_bytes(card.to_json())
    assert main(["push", str(directory), "127.0.0.1:1/models/fraud"]) == 1
    assert "onnxruntime cannot load the model" in capsys.readouterr().err


def test_trained_models_explain_their_own_scores_exactly(models: dict[str, Path]) -> None:
    rows = build_dataset(DatasetSpec(rows=3000, seed=9)).features.astype(np.float32)
    for family, directory in models.items():
        artifact = read_model_dir(directory)
        assert artifact.card.explainer_sha256 == sha256_digest(artifact.explainer or b"")
        _, explainer = open_model(artifact)
        assert explainer is not None
        graph = OnnxModel(artifact.onnx).scores(rows)
        np.testing.assert_allclose(explainer.scores(rows), graph, atol=1e-5, err_msg=family)
        (explanation,) = explainer.explain(rows[:1])
        assert (
            explanation.unit
            == UNITS["logistic" if family == "gradient_boosting" else "exp2_negative"]
        )
        assert len(explanation.contributions) == 5


def test_an_explainer_that_does_not_fit_its_graph_is_refused(
    models: dict[str, Path], tmp_path: Path
) -> None:
    directory = copy_of(models["gradient_boosting"], tmp_path)
    tree = json.loads((directory / EXPLAINER_FILE).read_bytes())
    leaf = tree["trees"][0]["left"].index(-1)
    tree["trees"][0]["value"][leaf] += 3.0  # one leaf of the first tree, as a bad export would
    tampered = json.dumps(tree).encode()
    (directory / EXPLAINER_FILE).write_bytes(tampered)
    with pytest.raises(ModelArtifactError, match="do not belong together"):
        read_model_dir(directory)
    card = read_model_dir(models["gradient_boosting"]).card
    updated = card.model_copy(update={"explainer_sha256": sha256_digest(tampered)})
    (directory / CARD_FILE).write_bytes(updated.to_json())
    with pytest.raises(ModelProbeError, match="does not match the ONNX graph"):
        open_model(read_model_dir(directory))


def test_inspect_of_a_missing_directory_says_what_it_expected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", "/nonexistent/model"]) == 1
    assert "no such model directory" in capsys.readouterr().err


def test_the_console_script_exits_non_zero_when_the_registry_is_unreachable(
    models: dict[str, Path],
) -> None:
    script = Path(sys.executable).parent / "fraudpipe-model"
    target = f"127.0.0.1:{_closed_port()}/models/fraud:v1"
    done = subprocess.run(
        [str(script), "push", str(models["isolation_forest"]), target],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("fraudpipe-model: error: cannot reach the OCI registry")
    assert "Traceback" not in done.stderr
