"""A model from a real OCI registry that is not the model its digest names, or whose graph is
cut short, is refused with the reason before anything scores with it. The registry holds
honest artifacts; a hop in front of it (a compromised registry or mirror, a broken proxy)
changes what it answers."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from fraudpipe_common.inference import open_session
from fraudpipe_common.model_artifact import (
    ARTIFACT_TYPE,
    CARD_MEDIA_TYPE,
    ONNX_MEDIA_TYPE,
    ModelArtifactError,
    pull_model,
    push_model,
)
from fraudpipe_common.model_probe import ModelProbeError
from fraudpipe_common.oci import (
    OCI_MANIFEST,
    Blob,
    DigestMismatchError,
    OciClient,
    Reference,
    sha256_digest,
)

from . import probe_graphs
from .test_model_artifact import make_card

pytestmark = pytest.mark.registry

Tamper = Callable[[str, bytes], bytes]


@dataclass
class TamperingHop:
    """Serves what the registry behind it serves, rewritten by `tamper(path, body)`."""

    address: str
    tamper: Tamper

    def via(self, ref: Reference) -> str:
        return f"{self.address}/{ref.repository}@{ref.digest}"


@pytest.fixture
def hop(oci_registry: str) -> Iterator[TamperingHop]:
    upstream = httpx.Client(base_url=f"http://{oci_registry}", follow_redirects=True)
    state = TamperingHop("", lambda _path, body: body)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = upstream.get(self.path, headers={"Accept": self.headers.get("Accept", "*/*")})
            body = state.tamper(self.path, answer.content)
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Docker-Content-Digest"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


async def test_an_honest_hop_changes_nothing(
    oci_registry: str, oci_repository: str, hop: TamperingHop
) -> None:
    artifact = probe_graphs.artifact(probe_graphs.squashed("amount"))
    ref = await push_model(oci_registry, oci_repository, artifact)
    pulled = await pull_model(hop.via(ref))
    assert pulled.onnx == artifact.onnx
    open_session(pulled)  # and it passes the probe


async def test_a_graph_truncated_on_the_way_is_refused_by_its_digest(
    oci_registry: str, oci_repository: str, hop: TamperingHop
) -> None:
    artifact = probe_graphs.artifact(probe_graphs.squashed("amount"))
    ref = await push_model(oci_registry, oci_repository, artifact)
    onnx_digest = sha256_digest(artifact.onnx)
    hop.tamper = lambda path, body: body[: len(body) // 2] if onnx_digest in path else body
    with pytest.raises(DigestMismatchError) as refused:
        await pull_model(hop.via(ref))
    half = len(artifact.onnx) // 2
    assert f"blob {onnx_digest} from {oci_repository}: got {half} bytes hashing to" in str(
        refused.value
    )


async def test_other_bytes_of_the_same_length_are_refused_by_their_digest(
    oci_registry: str, oci_repository: str, hop: TamperingHop
) -> None:
    artifact = probe_graphs.artifact(probe_graphs.squashed("amount"))
    ref = await push_model(oci_registry, oci_repository, artifact)
    onnx_digest = sha256_digest(artifact.onnx)
    # The same graph with another feature squashed: as long, loads, passes the probe.
    other = probe_graphs.squashed("amount_log")
    assert len(other) == len(artifact.onnx)
    hop.tamper = lambda path, body: other if onnx_digest in path else body
    with pytest.raises(DigestMismatchError, match=f"blob {onnx_digest} .* hashing to sha256:"):
        await pull_model(hop.via(ref))


async def test_a_manifest_other_than_the_digest_names_is_refused(
    oci_registry: str, oci_repository: str, hop: TamperingHop
) -> None:
    first = await push_model(oci_registry, oci_repository, probe_graphs.artifact(b"\x08\x08one"))
    second = await push_model(oci_registry, oci_repository, probe_graphs.artifact(b"\x08\x08two"))
    assert first.digest is not None
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"http://{oci_registry}/v2/{oci_repository}/manifests/{second.digest}",
            headers={"Accept": OCI_MANIFEST},
        )
    manifest_of_second = answer.content
    hop.tamper = lambda path, body: manifest_of_second if "/manifests/" in path else body
    with pytest.raises(DigestMismatchError, match=f"manifest .*@{first.digest} hashes to"):
        await pull_model(hop.via(first))


async def test_a_truncated_graph_under_a_card_of_the_whole_is_refused(
    oci_registry: str, oci_repository: str
) -> None:
    whole = probe_graphs.squashed("amount")
    layers = [
        Blob(whole[: len(whole) // 2], ONNX_MEDIA_TYPE),
        Blob(make_card(whole).to_json(), CARD_MEDIA_TYPE),
    ]
    async with OciClient(oci_registry) as client:
        ref = await client.push_artifact(oci_repository, ARTIFACT_TYPE, layers)
    with pytest.raises(ModelArtifactError, match="do not belong together"):
        await pull_model(ref)


async def test_a_truncated_graph_pushed_with_its_own_card_is_refused_at_load(
    oci_registry: str, oci_repository: str
) -> None:
    """Every digest matches (the file was cut before it was pushed): ONNX Runtime refuses it."""
    whole = probe_graphs.squashed("amount")
    ref = await push_model(
        oci_registry, oci_repository, probe_graphs.artifact(whole[: len(whole) // 2])
    )
    pulled = await pull_model(ref)
    with pytest.raises(ModelProbeError, match=r"ONNX Runtime cannot load the graph"):
        open_session(pulled)
