"""The stack's schema registry speaks the Confluent Schema Registry API for real: ids, lookups
by id, per-subject compatibility, and Avro's BACKWARD rule enforced on registration."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fraudpipe_testing.plugin import unique

pytestmark = pytest.mark.schema_registry

CONTENT_TYPE = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def transaction_schema(*extra_fields: dict[str, Any]) -> str:
    return json.dumps(
        {
            "type": "record",
            "name": "Transaction",
            "namespace": "fraudpipe",
            "fields": [
                {"name": "transaction_id", "type": "string"},
                {"name": "user_id", "type": "string"},
                {"name": "amount", "type": "double"},
                *extra_fields,
            ],
        }
    )


def register(client: httpx.Client, subject: str, schema: str) -> httpx.Response:
    return client.post(
        f"/subjects/{subject}/versions",
        json={"schemaType": "AVRO", "schema": schema},
        headers=CONTENT_TYPE,
    )


def test_avro_schemas_evolve_under_backward_compatibility(schema_registry_url: str) -> None:
    assert schema_registry_url.endswith("/apis/ccompat/v7")
    # The registry is shared by the session: a subject of this test's own, named as the
    # transactions topic's value subject is (TopicNameStrategy).
    subject = f"{unique('test')}.transactions.v1-value"
    v1 = transaction_schema()
    with httpx.Client(base_url=schema_registry_url, timeout=10) as client:
        first = register(client, subject, v1)
        assert first.status_code == 200, first.text
        first_id = first.json()["id"]
        assert isinstance(first_id, int)

        by_id = client.get(f"/schemas/ids/{first_id}")
        assert by_id.status_code == 200, by_id.text
        assert json.loads(by_id.json()["schema"]) == json.loads(v1)
        # The same schema again is the same id, not a new version.
        assert register(client, subject, v1).json()["id"] == first_id

        config = client.put(
            f"/config/{subject}", json={"compatibility": "BACKWARD"}, headers=CONTENT_TYPE
        )
        assert config.status_code == 200, config.text
        assert client.get(f"/config/{subject}").json()["compatibilityLevel"] == "BACKWARD"

        # A new field without a default: a reader of v2 cannot read v1's records.
        breaking = register(client, subject, transaction_schema({"name": "mcc", "type": "int"}))
        assert breaking.status_code == 409, breaking.text
        assert breaking.json()["error_code"] == 409

        # An optional field with a default is a backward-compatible change.
        v2 = transaction_schema({"name": "mcc", "type": ["null", "int"], "default": None})
        second = register(client, subject, v2)
        assert second.status_code == 200, second.text
        second_id = second.json()["id"]
        assert second_id != first_id

        assert client.get(f"/subjects/{subject}/versions").json() == [1, 2]
        latest = client.get(f"/subjects/{subject}/versions/latest").json()
        assert latest["id"] == second_id
        assert latest["version"] == 2
        assert json.loads(latest["schema"]) == json.loads(v2)
