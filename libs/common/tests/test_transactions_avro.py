"""transactions.v1 as Avro in the Confluent wire format: which writer schemas read as ours
(pure), and the decoder against a real Confluent-compatible schema registry."""

from __future__ import annotations

import copy
from typing import Any

import fastavro
import orjson
import pytest

from fraudpipe_common.contracts import transactions_avro
from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    decode_transaction,
)
from fraudpipe_common.contracts.transactions_avro import (
    SCHEMA,
    AvroDecoder,
    encode,
    read_problems,
    schema_id_of,
)
from fraudpipe_common.schema_registry import (
    RegistryUnavailableError,
    SchemaRegistryClient,
    SchemaRegistryError,
)

FIELDS = {
    "tx_id": "tx-1",
    "ts": "2026-12-05T10:00:00.250Z",
    "user_id": "u-1",
    "card_id": "c-1",
    "merchant_id": "m-1",
    "mcc": "5411",
    "amount": "42.50",
    "currency": "EUR",
    "country": "FR",
    "channel": "pos",
    "device_id": "d-1",
}


def changed(**types: Any) -> dict[str, Any]:
    """Our schema with some fields' types changed (None: the field removed)."""
    schema = copy.deepcopy(SCHEMA)
    fields = []
    for field in schema["fields"]:
        if field["name"] in types:
            if types[field["name"]] is None:
                continue
            field = {"name": field["name"], "type": types[field["name"]]}
        fields.append(field)
    schema["fields"] = fields
    return schema


def test_our_schema_and_backward_compatible_writers_read_as_ours() -> None:
    assert read_problems(SCHEMA, SCHEMA) == []
    assert read_problems(changed(ip=None), SCHEMA) == []  # ip has a default
    assert read_problems(changed(device_id="bytes"), SCHEMA) == []  # bytes read as string
    with_extra = copy.deepcopy(SCHEMA)
    with_extra["fields"].append({"name": "loyalty_tier", "type": "int"})
    assert read_problems(with_extra, SCHEMA) == []


def test_a_java_producers_string_type_objects_read_as_strings() -> None:
    # avro-maven-plugin with stringType=String writes every string field like this.
    java = copy.deepcopy(SCHEMA)
    for field in java["fields"]:
        if field["type"] == "string":
            field["type"] = {"type": "string", "avro.java.string": "String"}
    assert read_problems(java, SCHEMA) == []


def test_credentials_never_ride_in_the_registry_url() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        SchemaRegistryClient("https://svc:secret@registry.example.com/apis/ccompat/v7")


@pytest.mark.parametrize(
    ("writer", "problem"),
    [
        (changed(amount=None), "field 'amount' is missing and has no default"),
        (changed(amount="double"), "field 'amount' is 'double', not readable as 'string'"),
        (changed(tx_id=["null", "string"]), "field 'tx_id' is ['null', 'string']"),
        ({**SCHEMA, "name": "Payment"}, "the record is named 'Payment'"),
        ({"type": "string"}, "the schema is not a record"),
    ],
)
def test_writers_that_cannot_be_read_as_ours_say_why(writer: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in read_problems(writer, SCHEMA))


def test_the_wire_format_header_names_the_schema_id() -> None:
    message = encode(258, FIELDS)
    assert message[:5] == b"\x00\x00\x00\x01\x02"
    assert schema_id_of(message) == 258
    assert schema_id_of(orjson.dumps(FIELDS)) is None
    assert schema_id_of(b"\x00\x00") is None


# -- against a real registry -----------------------------------------------------------------
@pytest.fixture
async def registry(schema_registry_url: str) -> Any:
    async with SchemaRegistryClient(schema_registry_url) as client:
        yield client


def unique_topic(request: pytest.FixtureRequest) -> str:
    return f"avro-{request.node.name[:40]}-{id(request)}"


@pytest.mark.schema_registry
async def test_avro_messages_decode_to_what_their_json_decodes_to(
    registry: SchemaRegistryClient, request: pytest.FixtureRequest
) -> None:
    topic = unique_topic(request)
    schema_id = await transactions_avro.register(registry, topic)
    assert await transactions_avro.register(registry, topic) == schema_id  # idempotent
    decoder = AvroDecoder(registry)
    with_ip = FIELDS | {"ip": "192.0.2.7"}
    messages = [encode(schema_id, FIELDS), encode(schema_id, with_ip)]
    await decoder.prepare(messages)
    for message, fields in zip(messages, [FIELDS, with_ip], strict=True):
        assert decoder.decode(message)[:13] == decode_transaction(orjson.dumps(fields))[:13]


@pytest.mark.schema_registry
async def test_a_compatible_new_version_is_accepted_and_read(
    registry: SchemaRegistryClient, request: pytest.FixtureRequest
) -> None:
    topic = unique_topic(request)
    await transactions_avro.register(registry, topic)
    newer = copy.deepcopy(SCHEMA)
    newer["fields"].append({"name": "loyalty_tier", "type": ["null", "int"], "default": None})
    newer_id = await registry.register(transactions_avro.subject(topic), newer)
    decoder = AvroDecoder(registry)
    message = encode(newer_id, FIELDS | {"loyalty_tier": 2}, fastavro.parse_schema(newer))
    await decoder.prepare([message])
    assert decoder.decode(message).tx_id == "tx-1"


@pytest.mark.schema_registry
async def test_the_registry_refuses_a_backward_incompatible_version(
    registry: SchemaRegistryClient, request: pytest.FixtureRequest
) -> None:
    topic = unique_topic(request)
    await transactions_avro.register(registry, topic)
    required = copy.deepcopy(SCHEMA)
    required["fields"].append({"name": "risk_band", "type": "string"})  # no default
    with pytest.raises(SchemaRegistryError) as refused:
        await registry.register(transactions_avro.subject(topic), required)
    assert refused.value.status == 409


@pytest.mark.schema_registry
async def test_unreadable_messages_are_rejected_with_a_code_for_the_dlq(
    registry: SchemaRegistryClient, request: pytest.FixtureRequest
) -> None:
    topic = unique_topic(request)
    # Another subject, no compatibility to stop it: amount as a number.
    other = await registry.register(f"{topic}-other-value", changed(amount="double"))
    good = await transactions_avro.register(registry, topic)
    wrong = encode(
        other, FIELDS | {"amount": 42.5}, fastavro.parse_schema(changed(amount="double"))
    )
    unknown = b"\x00" + (2**31 - 7).to_bytes(4, "big") + b"\x02x"
    truncated = encode(good, FIELDS)[:-3]
    invalid = encode(good, FIELDS | {"currency": "euro"})
    decoder = AvroDecoder(registry)
    cases = {
        "incompatible_schema": wrong,
        "unknown_schema": unknown,
        "not_avro": orjson.dumps(FIELDS),
        "malformed_avro": truncated,
        "invalid_field": invalid,
    }
    await decoder.prepare(cases.values())
    for code, message in cases.items():
        with pytest.raises(InvalidTransactionError) as rejected:
            decoder.decode(message)
        assert rejected.value.code == code, rejected.value.detail


async def test_an_unreachable_registry_is_a_retry_never_a_rejection() -> None:
    async with SchemaRegistryClient("http://127.0.0.1:9/apis/ccompat/v7") as down:
        decoder = AvroDecoder(down)
        with pytest.raises(RegistryUnavailableError, match="cannot reach the schema registry"):
            await decoder.prepare([encode(1, FIELDS)])


@pytest.mark.schema_registry
async def test_a_404_that_is_not_the_registrys_own_is_unavailability(
    schema_registry_url: str,
) -> None:
    """A wrong base path (here the server's root, not its Confluent API) answers 404 without
    the registry's error code: retried as an outage, never taken for an unknown schema."""
    root = schema_registry_url.removesuffix("/apis/ccompat/v7")
    async with SchemaRegistryClient(root) as wrong:
        decoder = AvroDecoder(wrong)
        with pytest.raises(RegistryUnavailableError, match=r"is .* the registry's API"):
            await decoder.prepare([encode(1, FIELDS)])


@pytest.mark.schema_registry
async def test_a_compatibility_the_team_chose_is_left_alone(
    registry: SchemaRegistryClient, request: pytest.FixtureRequest
) -> None:
    topic = unique_topic(request)
    await registry.register(transactions_avro.subject(topic), SCHEMA)
    await registry.set_compatibility(transactions_avro.subject(topic), "FULL")
    await transactions_avro.register(registry, topic)
    assert await registry.compatibility(transactions_avro.subject(topic)) == "FULL"
    fresh = unique_topic(request) + "-fresh"
    await transactions_avro.register(registry, fresh)
    assert await registry.compatibility(transactions_avro.subject(fresh)) == "BACKWARD"
