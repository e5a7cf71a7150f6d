"""The CRD is generated from the models and is a valid structural schema."""

from __future__ import annotations

from typing import Any

import yaml

from fraudpipe_operator import crd

from .pipelines import REPO


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        found += walk(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += walk(schema[key], f"{path}[{key}]")
    return found


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.openapi_schema()["properties"]["spec"]
    return schema


def test_crd_files_match_the_models() -> None:
    assert crd.stale(REPO) == [], "run `fraudpipe-operator crd` and commit the result"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = crd.openapi_schema()
    missing = [
        path
        for part in ("spec", "status")
        for path, node in walk(schema["properties"][part], part)
        if "[" not in path.rsplit(".", 1)[-1] and not node.get("description")
    ]
    assert missing == []


def test_schema_is_structural_without_refs_or_unions() -> None:
    text = yaml.safe_dump(crd.crd())
    for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "title:", "$defs"):
        assert forbidden not in text
    for path, node in walk(crd.openapi_schema()):
        assert "type" in node, f"{path} has no type"
        for exclusive in ("exclusiveMinimum", "exclusiveMaximum"):
            # OpenAPI v3: a flag beside minimum/maximum, never a number (refused by the server)
            assert node.get(exclusive, True) is True, f"{path}.{exclusive}"


def test_cel_rules_cover_what_the_schema_cannot_say() -> None:
    rules = {
        path: [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        for path, node in walk(spec_schema(), "spec")
    }
    assert any("bootstrapServers" in r for r in rules["spec.kafka"])
    assert any("has(self.schemaRegistry)" in r for r in rules["spec.kafka"])
    assert any("minReplicas <= self.maxReplicas" in r for r in rules["spec.scorer.autoscaling"])
    assert any("flag <= self.block" in r for r in rules["spec.scorer.rules.thresholds"])
    assert any("@sha256:" in r for r in rules["spec.model.ref"])
    assert any("urlSecretRef" in r for r in rules["spec.redis"])
    assert any("dsnSecretRef" in r for r in rules["spec.postgres"])
    assert any("self.feedbackDays >= self.alertsDays" in r for r in rules["spec.retention"])
    assert "!self.archive.enabled || has(self.objectStore)" in rules["spec"]
    assert "!self.backup.enabled || has(self.objectStore)" in rules["spec"]


def test_the_object_store_is_optional_and_its_users_are_off_by_default() -> None:
    spec = spec_schema()
    properties = spec["properties"]
    assert "default" not in properties["objectStore"]
    store = properties["objectStore"]
    assert sorted(store["required"]) == ["bucket", "credentialsSecretRef"]
    credentials = store["properties"]["credentialsSecretRef"]["properties"]
    assert credentials["accessKeyIdKey"]["default"] == "AWS_ACCESS_KEY_ID"
    assert credentials["secretAccessKeyKey"]["default"] == "AWS_SECRET_ACCESS_KEY"
    assert properties["archive"]["default"]["enabled"] is False
    assert properties["backup"]["default"] == {"enabled": False, "schedule": "0 2 * * *",
                                               "keep": 7, "image": ""}  # fmt: skip


def test_nested_sections_default_to_their_own_defaults() -> None:
    spec = spec_schema()
    assert spec["required"] == ["model"]
    kafka = spec["properties"]["kafka"]
    assert kafka["default"]["mode"] == "managed"
    assert kafka["default"]["managed"]["replicas"] == 1
    assert kafka["properties"]["mode"]["enum"] == ["managed", "external"]
    topics = kafka["properties"]["topics"]["properties"]
    assert topics["transactions"]["default"]["name"] == "transactions.v1"
    assert topics["dlq"]["default"]["name"] == "transactions.v1.dlq"
    assert topics["transactions"]["properties"]["partitions"]["minimum"] == 1


def test_subresources_printer_columns_and_short_name() -> None:
    version = crd.crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.scorer.replicas"
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Ready", "Lag", "Model", "Canary", "Weight", "Age"]
    assert crd.crd()["spec"]["names"]["shortNames"] == ["fp"]


def test_chart_copy_is_templated_and_kept_on_uninstall() -> None:
    text = crd.render_chart_template()
    assert text.startswith("{{- if .Values.crds.install }}")
    assert "helm.sh/resource-policy: keep" in text
    body = text[text.index("\nspec:\n") : text.rindex("{{- end }}")]
    assert yaml.safe_load(body)["spec"] == crd.crd()["spec"]
