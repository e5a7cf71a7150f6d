"""`transactions.v1` as Avro in the Confluent wire format: byte 0 (magic), the writer schema's
registry id (4 bytes, big-endian), then the Avro binary body.

The Avro record has the JSON contract's fields with the same types and rules (`ts` and
`amount` stay strings: RFC 3339 and a decimal string, exact and validated alike), so both
formats end in `transaction_from_fields` and one set of rules. A message's writer schema is
read from the registry by id, once per id, and must be readable as `SCHEMA` (Avro schema
resolution: every field we need present with a type that reads as ours, or defaulted), else
every message written with it goes to the DLQ saying why. A registry that cannot be reached
is no reason to give a message up: `AvroDecoder.prepare` raises RegistryUnavailableError and
the caller retries the batch.
"""

from __future__ import annotations

import asyncio
import collections
import io
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import fastavro
import orjson

from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Tx,
    transaction_from_fields,
)
from fraudpipe_common.schema_registry import (
    SchemaNotFoundError,
    SchemaRegistryClient,
    SchemaRegistryError,
)

MAGIC = 0
UNKNOWN_TTL_S = 60.0
UNKNOWN_KEPT = 10_000
_HEADER = struct.Struct(">bI")

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "TransactionV1",
    "namespace": "io.fraudpipe",
    "doc": "transactions.v1: one payment event, keyed by user_id (docs in fraudpipe's contracts).",
    "fields": [
        {"name": "tx_id", "type": "string", "doc": "Unique id; the idempotency key."},
        {"name": "ts", "type": "string", "doc": "When it happened, RFC 3339, UTC."},
        {"name": "user_id", "type": "string", "doc": "Account holder; the Kafka key."},
        {"name": "card_id", "type": "string"},
        {"name": "merchant_id", "type": "string"},
        {"name": "mcc", "type": "string", "doc": "ISO 18245 merchant category code."},
        {"name": "amount", "type": "string", "doc": 'A decimal string such as "12.50".'},
        {"name": "currency", "type": "string", "doc": "ISO 4217 code."},
        {"name": "country", "type": "string", "doc": "ISO 3166-1 alpha-2 code."},
        {"name": "channel", "type": "string", "doc": "pos, ecom, atm or transfer."},
        {"name": "device_id", "type": "string"},
        {"name": "ip", "type": ["null", "string"], "default": None},
    ],
}
_READER = fastavro.parse_schema(SCHEMA)
_FIELDS = tuple(f["name"] for f in SCHEMA["fields"])


def subject(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def encode(schema_id: int, fields: dict[str, Any], schema: Any = _READER) -> bytes:
    """One message in the wire format; `fields` as the JSON contract has them."""
    body = io.BytesIO()
    body.write(_HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(body, schema, {name: fields.get(name) for name in _FIELDS})
    return body.getvalue()


def schema_id_of(value: bytes) -> int | None:
    """The writer schema's id, or None when the bytes are not in the wire format."""
    if len(value) < _HEADER.size or value[0] != MAGIC:
        return None
    return int(_HEADER.unpack_from(value)[1])


async def register(registry: SchemaRegistryClient, topic: str) -> int:
    """Register `SCHEMA` for the topic's values, as a Confluent serializer would; returns its
    id. A new subject, or one under NONE, gets BACKWARD compatibility (a new version must read
    every older one); a level the team chose (FULL, BACKWARD_TRANSITIVE…) is left alone, and
    so is a registry that lets clients register but not configure (403)."""
    name = subject(topic)
    if await registry.compatibility(name) in (None, "NONE"):
        try:
            await registry.set_compatibility(name, "BACKWARD")
        except SchemaRegistryError as exc:
            if exc.status != 403:
                raise
    return await registry.register(name, SCHEMA)


class AvroDecoder:
    """Decodes wire-format messages by their writer schema; `prepare` a batch first."""

    def __init__(
        self, registry: SchemaRegistryClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = registry
        self._clock = clock
        # Each writer schema seen, parsed, or the reason no message written with it can be read
        # (a schema's text never changes under its id: kept for good).
        self._writers: dict[int, Any] = {}
        # Ids the registry said it does not have, and when: asked again after UNKNOWN_TTL_S
        # (a replica behind its leader), and at most UNKNOWN_KEPT of them (random ids from a
        # broken producer must not grow the process).
        self._unknown: collections.OrderedDict[int, float] = collections.OrderedDict()

    async def prepare(self, values: Iterable[bytes | None]) -> None:
        """Fetch the writer schemas of these messages that are not known yet, concurrently."""
        now = self._clock()
        wanted = {schema_id_of(v) for v in values if v} - {None, *self._writers}
        fetch = [
            i
            for i in wanted
            if i is not None and now - self._unknown.get(i, -UNKNOWN_TTL_S) >= UNKNOWN_TTL_S
        ]
        answers = await asyncio.gather(*(self._fetch(i) for i in fetch))
        for schema_id, text in zip(fetch, answers, strict=True):
            if text is None:
                self._unknown[schema_id] = now
                self._unknown.move_to_end(schema_id)
                while len(self._unknown) > UNKNOWN_KEPT:
                    self._unknown.popitem(last=False)
            else:
                self._unknown.pop(schema_id, None)
                self._writers[schema_id] = _writer(schema_id, text)

    async def _fetch(self, schema_id: int) -> str | None:
        try:
            return await self.registry.schema(schema_id)
        except SchemaNotFoundError:
            return None

    def decode(self, value: bytes) -> Tx:
        schema_id = schema_id_of(value)
        if schema_id is None:
            raise InvalidTransactionError(
                "not_avro",
                "expected the Confluent wire format (byte 0, then a 4-byte schema id): this "
                "topic's format is avro",
            )
        if schema_id in self._unknown:
            raise InvalidTransactionError(
                "unknown_schema",
                f"schema id {schema_id} is not in the schema registry at {self.registry.url}",
            )
        writer = self._writers[schema_id]  # KeyError: the batch was not prepared (a bug)
        if isinstance(writer, InvalidTransactionError):
            raise InvalidTransactionError(writer.code, writer.detail)
        body = io.BytesIO(value)
        body.seek(_HEADER.size)
        try:
            fields = fastavro.schemaless_reader(body, writer, _READER)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError…
            raise InvalidTransactionError(
                "malformed_avro", f"cannot read it with schema id {schema_id}: {exc}"
            ) from None
        if body.tell() != len(value):
            raise InvalidTransactionError(
                "malformed_avro",
                f"{len(value) - body.tell()} bytes left after the record (schema id {schema_id})",
            )
        if not isinstance(fields, dict):
            raise InvalidTransactionError("malformed_avro", "the record is not a record")
        return transaction_from_fields(fields)


def _writer(schema_id: int, text: str) -> Any:
    """The parsed writer schema, or why messages written with it cannot be read as ours."""
    try:
        schema = orjson.loads(text)
        parsed = fastavro.parse_schema(schema)
    except Exception as exc:  # not JSON, or not a valid Avro schema
        return InvalidTransactionError(
            "incompatible_schema", f"schema id {schema_id} is not a valid Avro schema: {exc}"
        )
    problems = read_problems(schema, SCHEMA)
    if problems:
        return InvalidTransactionError(
            "incompatible_schema",
            f"schema id {schema_id} cannot be read as transactions.v1: " + "; ".join(problems),
        )
    return parsed


def _primitive(schema: Any) -> Any:
    if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
        return schema["type"]
    return schema


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
# Avro's promotions: a writer's type on the left is read as any type on the right.
_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def read_problems(writer: Any, reader: Any) -> list[str]:
    """Why data written with `writer` cannot be read as `reader` (a flat record of primitive
    and union fields, as ours is); empty when it can (Avro schema resolution rules)."""
    if not (isinstance(writer, dict) and writer.get("type") == "record"):
        return ["the schema is not a record"]
    if writer.get("name", "").rsplit(".", 1)[-1] != reader["name"]:
        return [f"the record is named {writer.get('name')!r}, not {reader['name']!r}"]
    written = {f["name"]: f["type"] for f in writer.get("fields", [])}
    problems = []
    for field in reader["fields"]:
        name = field["name"]
        if name not in written:
            if "default" not in field:
                problems.append(f"field {name!r} is missing and has no default")
        elif not _readable(written[name], field["type"]):
            problems.append(
                f"field {name!r} is {written[name]!r}, not readable as {field['type']!r}"
            )
    return problems


def _readable(writer: Any, reader: Any) -> bool:
    # {"type": "string", "avro.java.string": "String"}, or with a logicalType: still a string.
    writer, reader = _primitive(writer), _primitive(reader)
    if isinstance(writer, list):  # every branch the writer may have taken
        return all(_readable(branch, reader) for branch in writer)
    if isinstance(reader, list):
        return any(_readable(writer, branch) for branch in reader)
    if isinstance(writer, str) and isinstance(reader, str):
        return reader in _PROMOTIONS.get(writer, {writer})
    return False  # named and complex types: ours has none


__all__ = [
    "MAGIC",
    "SCHEMA",
    "AvroDecoder",
    "encode",
    "read_problems",
    "register",
    "schema_id_of",
    "subject",
]
