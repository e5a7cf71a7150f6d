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

import io
import struct
from collections.abc import Iterable
from typing import Any

import fastavro
import orjson

from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Tx,
    transaction_from_fields,
)
from fraudpipe_common.schema_registry import SchemaNotFoundError, SchemaRegistryClient

MAGIC = 0
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
    """Register `SCHEMA` for the topic's values under BACKWARD compatibility (a new version
    must read every older one), as a Confluent serializer would; returns its id."""
    await registry.set_compatibility(subject(topic), "BACKWARD")
    return await registry.register(subject(topic), SCHEMA)


class AvroDecoder:
    """Decodes wire-format messages by their writer schema; `prepare` a batch first."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self.registry = registry
        # Each writer schema seen, parsed, or the reason no message written with it can be read.
        self._writers: dict[int, Any] = {}

    async def prepare(self, values: Iterable[bytes | None]) -> None:
        """Fetch the writer schemas of these messages that are not known yet."""
        for schema_id in {schema_id_of(v) for v in values if v} - {None, *self._writers}:
            assert schema_id is not None
            try:
                text = await self.registry.schema(schema_id)
            except SchemaNotFoundError:
                self._writers[schema_id] = InvalidTransactionError(
                    "unknown_schema",
                    f"schema id {schema_id} is not in the schema registry at {self.registry.url}",
                )
                continue
            self._writers[schema_id] = _writer(schema_id, text)

    def decode(self, value: bytes) -> Tx:
        schema_id = schema_id_of(value)
        if schema_id is None:
            raise InvalidTransactionError(
                "not_avro",
                "expected the Confluent wire format (byte 0, then a 4-byte schema id): this "
                "topic's format is avro",
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
