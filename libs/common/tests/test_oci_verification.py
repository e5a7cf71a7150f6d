"""The OCI client against a registry that misbehaves: tampered bytes are refused, nothing is
read past what the manifest promised, relative upload locations work. The registry is an
in-memory fake here, since a real one never lies."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fraudpipe_common.oci import (
    Blob,
    DigestMismatchError,
    OciClient,
    OciError,
    Reference,
    sha256_digest,
)

REGISTRY = "registry.test:5000"


class FakeRegistry:
    """Just enough of the distribution API; `tamper` rewrites what GET returns."""

    def __init__(self, tamper: Callable[[str, bytes], bytes] = lambda _path, data: data) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.tamper = tamper
        self.upload_paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            return httpx.Response(202, headers={"Location": "/v2/repo/blobs/uploads/u1?state=x"})
        if request.method == "PUT" and "/blobs/uploads/" in path:
            self.upload_paths.append(str(request.url))
            self.blobs[request.url.params["digest"]] = request.content
            return httpx.Response(201)
        if request.method == "PUT" and "/manifests/" in path:
            digest = sha256_digest(request.content)
            self.manifests[digest] = self.manifests[path.rsplit("/", 1)[1]] = request.content
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if request.method == "GET" and (match := re.search(r"/(manifests|blobs)/(.+)$", path)):
            store = self.manifests if match.group(1) == "manifests" else self.blobs
            if match.group(2) not in store:
                return httpx.Response(404)
            return httpx.Response(200, content=self.tamper(path, store[match.group(2)]))
        return httpx.Response(405)


async def push(registry: FakeRegistry) -> Reference:
    async with OciClient(REGISTRY, plain_http=True, transport=httpx.MockTransport(registry)) as c:
        return await c.push_artifact(
            "repo", "application/x-test", [Blob(b"model-bytes", "application/x-m")]
        )


async def pull(registry: FakeRegistry, ref: Reference) -> list[bytes]:
    async with OciClient(REGISTRY, plain_http=True, transport=httpx.MockTransport(registry)) as c:
        return (await c.pull_artifact(ref))[1]


async def test_a_relative_upload_location_is_resolved_against_the_registry() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    assert registry.upload_paths[0].startswith(f"http://{REGISTRY}/v2/repo/blobs/uploads/u1?")
    assert "state=x" in registry.upload_paths[0]
    assert await pull(registry, ref) == [b"model-bytes"]


async def test_a_tampered_manifest_is_refused() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    registry.tamper = lambda path, data: (
        data.replace(b"schemaVersion", b"schemaversion") if "/manifests/" in path else data
    )
    with pytest.raises(DigestMismatchError, match="manifest"):
        await pull(registry, ref)


async def test_a_tampered_blob_is_refused() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    registry.tamper = lambda path, data: b"model-BYTES" if "/blobs/" in path else data
    with pytest.raises(DigestMismatchError, match="blob"):
        await pull(registry, ref)


async def test_a_truncated_blob_is_refused() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    registry.tamper = lambda path, data: data[:-1] if "/blobs/" in path else data
    with pytest.raises(DigestMismatchError):
        await pull(registry, ref)


async def test_a_blob_longer_than_its_descriptor_is_not_read_to_the_end() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:  # a registry that never stops sending
            sent += 1
            yield b"x" * 65536

    inner = registry.__call__

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/blobs/" in request.url.path:
            return httpx.Response(200, content=endless())
        return inner(request)

    async with OciClient(REGISTRY, plain_http=True, transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(DigestMismatchError, match="more than the 11 bytes"):
            await c.pull_artifact(ref)
    assert sent <= 2


async def test_a_manifest_over_4_mib_is_refused_unread() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{" + b" " * (5 * 1024 * 1024) + b"}")

    async with OciClient(REGISTRY, plain_http=True, transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(OciError, match="over 4194304 bytes"):
            await c.pull_manifest(Reference(REGISTRY, "repo", "v1"))


async def test_a_failed_blob_pull_quotes_the_start_of_the_answer_only() -> None:
    registry = FakeRegistry()
    ref = await push(registry)
    inner = registry.__call__

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/blobs/" in request.url.path:
            return httpx.Response(500, content=b"E" * 1_000_000)
        return inner(request)

    async with OciClient(REGISTRY, plain_http=True, transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(OciError, match="answered 500") as raised:
            await c.pull_artifact(ref)
    assert len(str(raised.value)) < 1000


async def test_a_registry_asking_for_credentials_says_so() -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(401))
    async with OciClient(REGISTRY, plain_http=True, transport=transport) as client:
        with pytest.raises(OciError, match="asks for credentials"):
            await client.pull_manifest(Reference(REGISTRY, "repo", "v1"))
