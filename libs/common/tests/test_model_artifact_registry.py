"""The model artifact against a real OCI registry: push, pull by digest, refusals."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from fraudpipe_common.model_artifact import (
    ARTIFACT_TYPE,
    CARD_MEDIA_TYPE,
    ONNX_MEDIA_TYPE,
    ModelArtifact,
    ModelArtifactError,
    load_model,
    pull_model,
    push_model,
    write_model_dir,
)
from fraudpipe_common.oci import Blob, OciClient, OciError, Reference, RegistryUnreachableError

from .test_model_artifact import ONNX, make_card

pytestmark = pytest.mark.registry


async def test_push_then_pull_returns_the_same_model_pinned_by_digest(
    oci_registry: str, oci_repository: str
) -> None:
    artifact = ModelArtifact(ONNX, make_card())
    ref = await push_model(oci_registry, oci_repository, artifact, tag="v1")

    assert ref.digest is not None
    assert ref.tag is None
    assert str(ref) == f"{oci_registry}/{oci_repository}@{ref.digest}"
    pulled = await pull_model(str(ref))
    assert pulled.onnx == ONNX
    assert pulled.card == artifact.card
    assert pulled.reference == ref

    async with OciClient(oci_registry) as client:
        manifest, digest = await client.pull_manifest(
            Reference.parse(f"{oci_registry}/{oci_repository}:v1")
        )
    assert digest == ref.digest  # the tag points at what was pushed
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        ONNX_MEDIA_TYPE,
        CARD_MEDIA_TYPE,
    ]
    assert manifest["annotations"]["io.fraudpipe.model.family"] == "gradient_boosting"


async def test_load_model_reads_a_directory_or_pulls_a_reference(
    oci_registry: str, oci_repository: str, tmp_path: Path
) -> None:
    artifact = ModelArtifact(ONNX, make_card())
    directory = tmp_path / "model"
    write_model_dir(directory, artifact)
    assert (await load_model(str(directory))).card == artifact.card
    ref = await push_model(oci_registry, oci_repository, artifact)
    assert (await load_model(str(ref))).onnx == ONNX


async def test_an_artifact_of_another_type_is_not_taken_for_a_model(
    oci_registry: str, oci_repository: str
) -> None:
    async with OciClient(oci_registry) as client:
        ref = await client.push_artifact(
            oci_repository, "application/vnd.example.other", [Blob(b"x", "text/plain")]
        )
    with pytest.raises(ModelArtifactError, match="is not a fraudpipe model"):
        await pull_model(ref)


async def test_a_pushed_pair_whose_card_describes_other_bytes_is_refused(
    oci_registry: str, oci_repository: str
) -> None:
    layers = [
        Blob(ONNX + b"swapped", ONNX_MEDIA_TYPE),
        Blob(make_card().to_json(), CARD_MEDIA_TYPE),
    ]
    async with OciClient(oci_registry) as client:
        ref = await client.push_artifact(oci_repository, ARTIFACT_TYPE, layers)
    with pytest.raises(ModelArtifactError, match="do not belong together"):
        await pull_model(ref)


async def test_an_artifact_without_a_card_layer_is_refused(
    oci_registry: str, oci_repository: str
) -> None:
    async with OciClient(oci_registry) as client:
        ref = await client.push_artifact(
            oci_repository, ARTIFACT_TYPE, [Blob(ONNX, ONNX_MEDIA_TYPE)]
        )
    with pytest.raises(ModelArtifactError, match=re.escape(f"no {CARD_MEDIA_TYPE} layer")):
        await pull_model(ref)


async def test_pulling_a_digest_the_registry_does_not_hold_fails(
    oci_registry: str, oci_repository: str
) -> None:
    await push_model(oci_registry, oci_repository, ModelArtifact(ONNX, make_card()))
    missing = Reference(oci_registry, oci_repository, None, "sha256:" + "1" * 64)
    with pytest.raises(OciError, match="404"):
        await pull_model(missing)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_pushing_to_an_unreachable_registry_gives_a_clear_error() -> None:
    registry = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(
        RegistryUnreachableError, match=f"cannot reach the OCI registry at {registry}"
    ):
        await push_model(registry, "models/fraud", ModelArtifact(ONNX, make_card()))


async def test_pulling_from_an_unreachable_registry_gives_a_clear_error() -> None:
    registry = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(RegistryUnreachableError, match="registry is running"):
        await pull_model(f"{registry}/models/fraud@sha256:{'2' * 64}")
