"""A small OCI distribution client: push and pull artifacts, always verified by digest.

fraudpipe refers to every model by `registry/repository@sha256:<digest>`; whatever is pulled is
hashed and compared before anyone uses it, so a registry cannot hand back other bytes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class OciError(RuntimeError):
    """A registry operation failed; the message says which and why."""


class DigestMismatchError(OciError):
    """The bytes received do not hash to the digest they were asked for by."""


class RegistryUnreachableError(OciError):
    """The registry could not be contacted at all (connection refused, DNS, timeout)."""


class RegistryStatusError(OciError):
    """The registry answered with an unexpected HTTP status (`status`): 404 means the
    artifact is not there, 5xx and 429 a registry that may answer later."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the distribution spec's registries' own limit


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Reference:
    """`registry/repository[:tag][@sha256:digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, _, digest = text.partition("@")
        if digest and not _DIGEST.match(digest):
            raise OciError(f"{text!r}: digest must be sha256:<64 hex digits>")
        registry, slash, path = rest.partition("/")
        if not slash or not path:
            raise OciError(f"{text!r}: expected registry/repository[:tag][@sha256:…]")
        repository, tag = path, None
        if ":" in path.rsplit("/", 1)[-1]:
            repository, _, tag = path.rpartition(":")
        return cls(registry, repository, tag or None, digest or None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            body["annotations"] = self.annotations
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Descriptor:
        return cls(
            body["mediaType"], body["digest"], int(body["size"]), body.get("annotations", {})
        )


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str
    annotations: dict[str, str] = field(default_factory=dict)

    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, sha256_digest(self.data), len(self.data), self.annotations
        )


def is_loopback(registry: str) -> bool:
    host = (
        registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry[1:].split("]")[0]
    )
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OciClient:
    """Talks to one registry. Plain HTTP only for loopback registries (or when asked)."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        scheme = (
            "http" if (is_loopback(registry) if plain_http is None else plain_http) else "https"
        )
        self.registry = registry
        self._http = httpx.AsyncClient(
            base_url=f"{scheme}://{registry}/v2", timeout=timeout, transport=transport
        )

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: httpx.TransportError, what: str = "") -> RegistryUnreachableError:
        return RegistryUnreachableError(
            f"cannot reach the OCI registry at {self.registry}{f' ({what})' if what else ''}: "
            f"{type(exc).__name__}: {exc or 'no detail'}. Check the address and that the "
            "registry is running (hack/stack up starts a local one)."
        )

    async def __aenter__(self) -> OciClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def push_blob(self, repository: str, blob: Blob) -> Descriptor:
        desc = blob.descriptor()
        head = await self._send("HEAD", f"/{repository}/blobs/{desc.digest}")
        if head.status_code == 200:
            return desc  # content-addressed: already there means identical
        start = await self._send("POST", f"/{repository}/blobs/uploads/")
        _expect(start, 202, f"start upload to {repository}")
        # The spec allows a relative Location; resolve it against the request, not base_url.
        location = start.request.url.join(start.headers["Location"])
        put = await self._send(
            "PUT",
            str(location.copy_merge_params({"digest": desc.digest})),
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        _expect(put, 201, f"upload blob {desc.digest} to {repository}")
        return desc

    async def push_artifact(
        self,
        repository: str,
        artifact_type: str,
        layers: list[Blob],
        *,
        config: Blob | None = None,
        tag: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Reference:
        """Push blobs and an OCI image manifest; returns the digest-pinned reference."""
        config = config or Blob(b"{}", OCI_EMPTY_CONFIG)
        config_desc = await self.push_blob(repository, config)
        layer_descs = [await self.push_blob(repository, layer) for layer in layers]
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config_desc.to_json(),
            "layers": [d.to_json() for d in layer_descs],
        }
        if annotations:
            manifest["annotations"] = annotations
        body = orjson.dumps(manifest)
        digest = sha256_digest(body)
        put = await self._send(
            "PUT",
            f"/{repository}/manifests/{tag or digest}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        _expect(put, 201, f"push manifest to {repository}")
        if (returned := put.headers.get("Docker-Content-Digest")) and returned != digest:
            raise DigestMismatchError(f"registry stored manifest as {returned}, expected {digest}")
        return Reference(self.registry, repository, None, digest)

    async def pull_manifest(self, ref: Reference) -> tuple[dict[str, Any], str]:
        """The manifest and its digest; when pulled by digest, the bytes are verified."""
        target = ref.digest or ref.tag or "latest"
        what = f"pull manifest {ref}"
        try:
            async with self._http.stream(
                "GET", f"/{ref.repository}/manifests/{target}", headers={"Accept": OCI_MANIFEST}
            ) as response:
                if response.status_code != 200:
                    start = await _read_at_most(response, 500)
                    _expect(response, 200, what, start.decode(errors="replace"))
                # Registries refuse manifests over 4 MiB; nothing longer is read.
                content = await _read_at_most(response, MAX_MANIFEST_BYTES + 1)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, what) from exc
        if len(content) > MAX_MANIFEST_BYTES:
            raise OciError(f"{what}: the manifest is over {MAX_MANIFEST_BYTES} bytes")
        digest = sha256_digest(content)
        if ref.digest and digest != ref.digest:
            raise DigestMismatchError(f"manifest {ref} hashes to {digest}")
        manifest: dict[str, Any] = orjson.loads(content)
        return manifest, digest

    async def pull_blob(self, repository: str, desc: Descriptor) -> bytes:
        """The blob's bytes, verified against its descriptor. Read as a stream and given up
        once past the descriptor's size: a registry cannot make the client hold more than
        the (digest-pinned) manifest promised."""
        what = f"pull blob {desc.digest} from {repository}"
        url = f"/{repository}/blobs/{desc.digest}"
        hasher, chunks, size = hashlib.sha256(), [], 0
        try:
            async with self._http.stream("GET", url, follow_redirects=True) as response:
                if response.status_code != 200:
                    start = await _read_at_most(response, 500)
                    _expect(response, 200, what, start.decode(errors="replace"))
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > desc.size:
                        raise DigestMismatchError(
                            f"blob {desc.digest} from {repository}: more than the {desc.size} "
                            "bytes its descriptor names; stopped reading"
                        )
                    hasher.update(chunk)
                    chunks.append(chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, what) from exc
        digest = "sha256:" + hasher.hexdigest()
        if size != desc.size or digest != desc.digest:
            raise DigestMismatchError(
                f"blob {desc.digest} from {repository}: got {size} bytes hashing to {digest}"
            )
        return b"".join(chunks)

    async def pull_artifact(self, ref: Reference) -> tuple[dict[str, Any], list[bytes]]:
        """Manifest and every layer's bytes, each verified against its digest."""
        manifest, _ = await self.pull_manifest(ref)
        layers = [
            await self.pull_blob(ref.repository, Descriptor.from_json(layer))
            for layer in manifest.get("layers", [])
        ]
        return manifest, layers


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of a streamed answer (an error's text, for its message); no more."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _expect(response: httpx.Response, status: int, action: str, text: str | None = None) -> None:
    """Raise unless the answer has `status`; `text` stands for the body of a streamed one."""
    if response.status_code == 401:
        raise RegistryStatusError(
            f"{action}: the registry asks for credentials, which this client does not send yet; "
            "use a registry that allows anonymous access from the pipeline (docs/decisions.md)",
            401,
        )
    if response.status_code != status:
        raise RegistryStatusError(
            f"{action}: registry answered {response.status_code}: "
            f"{response.text[:500] if text is None else text}",
            response.status_code,
        )
