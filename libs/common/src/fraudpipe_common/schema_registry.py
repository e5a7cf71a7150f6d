"""A client of the Confluent Schema Registry REST API, as Confluent's registry, Redpanda's
built-in one, Apicurio (`/apis/ccompat/v7`) and Karapace serve it: register a subject's
schema, read a schema by id, set a subject's compatibility.

Errors say which of three things happened, because callers act differently on each: the
registry is unreachable or failing (`RegistryUnavailableError`: retry, never give a message
up), it has no such schema (`SchemaNotFoundError`: the message can never be read), or it
refused a schema (`SchemaRegistryError`, e.g. 409 for a backward-incompatible change).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

import httpx
import orjson

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
# The Confluent API's codes for no such subject (40401), version (40402) or schema (40403).
# 40408: the subject has no compatibility of its own (Confluent's GET /config/{subject}).
_NOT_FOUND_CODES = {40401, 40402, 40403, 40408}
Compatibility = Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL", "NONE"]


class SchemaRegistryError(Exception):
    """The registry refused the request; `status` and `code` are its answer."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SchemaNotFoundError(SchemaRegistryError):
    """No schema (or subject) by that id or name: a 404 carrying the registry API's own error
    code. Any other 404 (a wrong base path, a proxy or ingress answering) is unavailability."""


class RegistryUnavailableError(SchemaRegistryError):
    """The registry cannot be reached or failed (5xx): try again later."""


class SchemaRegistryClient:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = httpx.URL(url.rstrip("/"))
        if parts.userinfo:
            raise ValueError(
                "the schema registry URL must not carry credentials (they would show in logs "
                "and DLQ details): give SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD"
            )
        self.url = str(parts)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout_s,
            headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
            auth=None if username is None else httpx.BasicAuth(username, password or ""),
            transport=transport,
        )

    async def __aenter__(self) -> SchemaRegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def schema(self, schema_id: int) -> str:
        """The schema text registered under `schema_id`."""
        body = await self._call("GET", f"/schemas/ids/{schema_id}")
        text: str = body["schema"]
        return text

    async def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register `schema` (Avro) as the subject's newest version, or find it there already;
        returns its id. Refused (SchemaRegistryError, status 409) when it breaks the subject's
        compatibility rule."""
        payload = {"schemaType": "AVRO", "schema": orjson.dumps(schema).decode()}
        body = await self._call("POST", f"/subjects/{subject}/versions", payload)
        schema_id: int = body["id"]
        return schema_id

    async def compatibility(self, subject: str) -> str | None:
        """The subject's compatibility level (the registry's default when it has none of its
        own, on most registries), or None when the subject does not exist."""
        try:
            body = await self._call("GET", f"/config/{subject}")
        except SchemaNotFoundError:
            return None
        level: str | None = body.get("compatibilityLevel") or body.get("compatibility")
        return level

    async def set_compatibility(self, subject: str, level: Compatibility) -> None:
        await self._call("PUT", f"/config/{subject}", {"compatibility": level})

    async def _call(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(
                method, path, content=None if payload is None else orjson.dumps(payload)
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(
                f"cannot reach the schema registry at {self.url}: {type(exc).__name__}: {exc}",
                0,
            ) from exc
        if response.is_success:
            body: dict[str, Any] = response.json()
            return body
        try:
            error = response.json()
            code, message = error.get("error_code"), error.get("message", response.text)
        except ValueError:
            code, message = None, response.text
        text = f"schema registry {method} {path}: {response.status_code} {message}"
        if response.status_code == 404 and code in _NOT_FOUND_CODES:
            raise SchemaNotFoundError(text, 404, code)
        if response.status_code == 404:
            # Not the registry's own "not found": a wrong base path, or a proxy answering.
            raise RegistryUnavailableError(
                f"{text} (no registry error code: is {self.url} the registry's API?)", 404, code
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise RegistryUnavailableError(text, response.status_code, code)
        raise SchemaRegistryError(text, response.status_code, code)
