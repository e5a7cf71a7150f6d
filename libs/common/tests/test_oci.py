"""Pure logic of the OCI client: references, digests, descriptors."""

from __future__ import annotations

import pytest

from fraudpipe_common.oci import (
    Blob,
    Descriptor,
    OciError,
    Reference,
    is_loopback,
    sha256_digest,
)

DIGEST = "sha256:" + "ab" * 32


def test_reference_parses_registry_repository_tag_and_digest() -> None:
    ref = Reference.parse(f"127.0.0.1:5000/models/fraud-gbt:v3@{DIGEST}")
    assert ref == Reference("127.0.0.1:5000", "models/fraud-gbt", "v3", DIGEST)
    assert str(ref) == f"127.0.0.1:5000/models/fraud-gbt:v3@{DIGEST}"


def test_reference_without_tag_keeps_registry_port_out_of_the_tag() -> None:
    ref = Reference.parse(f"localhost:5000/fraud@{DIGEST}")
    assert ref.registry == "localhost:5000"
    assert ref.repository == "fraud"
    assert ref.tag is None


@pytest.mark.parametrize(
    "text", ["no-repository", f"reg/repo@sha256:{'z' * 64}", "reg/repo@md5:abc"]
)
def test_reference_rejects_malformed_text(text: str) -> None:
    with pytest.raises(OciError):
        Reference.parse(text)


def test_with_digest_drops_the_tag() -> None:
    ref = Reference.parse("r.example/m:latest").with_digest(DIGEST)
    assert str(ref) == f"r.example/m@{DIGEST}"


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("registry.example.com", False),
        ("10.0.0.5:5000", False),
    ],
)
def test_only_loopback_registries_default_to_plain_http(registry: str, loopback: bool) -> None:
    assert is_loopback(registry) is loopback


def test_blob_descriptor_hashes_its_bytes() -> None:
    desc = Blob(b"model", "application/octet-stream", {"k": "v"}).descriptor()
    assert desc.digest == sha256_digest(b"model")
    assert desc.size == 5
    assert Descriptor.from_json(desc.to_json()) == desc


async def test_an_unreachable_registry_is_named_in_the_error() -> None:
    import socket

    from fraudpipe_common.oci import OciClient, RegistryUnreachableError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{sock.getsockname()[1]}"
    async with OciClient(registry) as client:
        with pytest.raises(
            RegistryUnreachableError, match=f"cannot reach the OCI registry at {registry}"
        ):
            await client.pull_manifest(Reference.parse(f"{registry}/m@{DIGEST}"))
