"""API keys: hashed in configuration, bearer tokens, write scope for writes, open reads by
configuration, and 401/403 bodies that say what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fraudpipe_api.auth import KeyFileError, KeyRing, Scope, hash_key, parse_keys

from .harness import READ_TOKEN, WRITE_TOKEN, ApiProcess, alert_row, insert_alerts, key_line

FEEDBACK = {"label": "fraud", "analyst": "ann"}


def test_a_key_ring_finds_keys_by_their_hash_only() -> None:
    keys = parse_keys([key_line("secret", "write", "ops"), "", "# comment"], "test")
    ring = KeyRing(keys)
    found = ring.find("secret")
    assert found is not None
    assert found.name == "ops"
    assert found.allows(Scope.WRITE)
    assert ring.find("Secret") is None
    assert ring.find(hash_key("secret")) is None  # the stored hash is not itself a key


def test_a_changed_key_file_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    """As the kubelet updates a Secret volume: a new file swapped in under the same name."""
    now = [0.0]
    path = tmp_path / "keys"
    path.write_text(key_line("old", "write", "ops") + "\n")
    ring = KeyRing.load(str(path), None, check_every_s=5, clock=lambda: now[0])
    assert ring.find("old") is not None

    swapped = tmp_path / "keys.new"
    swapped.write_text(key_line("new", "read", "ops") + "\n")
    swapped.replace(path)
    now[0] = 4.0
    assert ring.find("old") is not None  # checked at most every check_every_s
    now[0] = 6.0
    assert ring.find("old") is None  # revoked
    found = ring.find("new")
    assert found is not None
    assert not found.allows(Scope.WRITE)

    # A file that no longer parses keeps only the keys it still holds: one removed in the same
    # edit as the typo is revoked all the same.
    path.write_text(key_line("new", "read", "ops") + "\n" + key_line("other", "read", "x") + "\n")
    now[0] = 12.0
    assert ring.find("other") is not None
    broken = tmp_path / "keys.broken"
    broken.write_text(key_line("new", "read", "ops") + "\nnot a key line\n")
    broken.replace(path)
    now[0] = 18.0
    assert ring.find("new") is not None
    assert ring.find("other") is None
    assert len(ring) == 1


def test_malformed_key_lines_name_the_line() -> None:
    with pytest.raises(KeyFileError, match="line 2: expected a sha256"):
        parse_keys([key_line("a", "read", "x"), "nothex:read"], "keys")
    with pytest.raises(KeyFileError, match="line 1: scope must be read or write"):
        parse_keys([hash_key("a") + ":admin"], "keys")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.kafka
async def test_reads_need_a_key_and_writes_need_write_scope(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("a1")])
    async with httpx.AsyncClient(base_url=api.url) as client:
        anonymous = await client.get("/v1/alerts")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json() == {
            "error": "unauthorized",
            "detail": "missing API key: send 'Authorization: Bearer <key>'",
        }
        wrong = await client.get("/v1/alerts", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "unknown API key"
        basic = await client.get("/v1/alerts", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert basic.status_code == 401
        assert "Bearer" in basic.json()["detail"]

        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert (await client.get("/v1/alerts", headers=read)).status_code == 200
        refused = await client.post("/v1/alerts/a1/feedback", json=FEEDBACK, headers=read)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
        assert "'dashboard' has read scope" in refused.json()["detail"]
        assert "needs write scope" in refused.json()["detail"]

        write = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        accepted = await client.post("/v1/alerts/a1/feedback", json=FEEDBACK, headers=write)
        assert accepted.status_code == 201


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.kafka
async def test_open_reads_serve_reads_without_a_key_but_never_writes(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, API_OPEN_READS="true")
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("o1")])
    async with httpx.AsyncClient(base_url=api.url) as client:
        listed = await client.get("/v1/alerts")
        written = await client.post("/v1/alerts/o1/feedback", json=FEEDBACK)
        bad_key = await client.get("/v1/alerts", headers={"Authorization": "Bearer nope"})
    assert listed.status_code == 200
    assert [a["tx_id"] for a in listed.json()["items"]] == ["o1"]
    assert written.status_code == 401
    assert bad_key.status_code == 401  # a wrong key is refused even where none is needed


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.kafka
async def test_keys_from_the_environment_work_beside_the_file(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, API_KEYS=key_line("from-env", "read", "env"))
    async with httpx.AsyncClient(base_url=api.url) as client:
        env_key = await client.get("/v1/alerts", headers={"Authorization": "Bearer from-env"})
        file_key = await client.get(
            "/v1/alerts", headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
        )
    assert env_key.status_code == 200
    assert file_key.status_code == 200
