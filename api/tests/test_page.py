"""The analyst page in headless Chromium (Debian's): sign in with a key, live alert list,
filters, per-user drill-down, feedback buttons. Writes a screenshot (docs/ with
FRAUDPIPE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from fraudpipe_api.auth import hash_key

from .harness import READ_TOKEN, WRITE_TOKEN, ApiProcess, alert_row, insert_alerts, run
from .test_request_limits import from_address, metric

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def _labels(database_url: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tx_id, label, analyst FROM feedback ORDER BY id")
        return [(r["tx_id"], r["label"], r["analyst"]) for r in rows]
    finally:
        await conn.close()


def _seed(database_url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        alert_row("tx-9f2c01", user_id="alice", decision="BLOCK", score=0.97, decided=now),
        alert_row("tx-9f2c02", user_id="alice", decision="FLAG", score=0.41, decided=now),
        alert_row("tx-51aa07", user_id="bob", decision="FLAG", score=0.36, decided=now),
        alert_row("tx-77e310", user_id="carol", decision="BLOCK", score=0.88, decided=now),
    ]
    run(insert_alerts(database_url, rows))


def _rows(page: Page) -> list[str]:
    return [str(r.get_attribute("data-tx")) for r in page.locator("tbody#alerts tr[data-tx]").all()]


def test_an_analyst_signs_in_filters_drills_down_and_labels(
    api: ApiProcess, tmp_path: Path
) -> None:
    database_url = api.env["DATABASE_URL"]
    _seed(database_url)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 640})
        try:
            response = page.goto(api.url + "/")
            assert response is not None
            assert response.status == 401  # reads are closed: the page asks for a key
            page.fill("#key", READ_TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("tbody#alerts tr[data-tx]")).to_have_count(4)

            # Filter: BLOCK only.
            page.select_option("select[name=decision]", "BLOCK")
            page.click("#filters button[type=submit]")
            expect(page.locator("tbody#alerts tr[data-tx]")).to_have_count(2)
            assert set(_rows(page)) == {"tx-9f2c01", "tx-77e310"}

            # Drill-down: click a user, see only theirs.
            page.goto(api.url + "/")
            page.locator("a.user", has_text="alice").first.click()
            expect(page.locator("#drill")).to_have_text("alice")
            assert set(_rows(page)) == {"tx-9f2c01", "tx-9f2c02"}

            # The sign-in key lives in an HttpOnly cookie: no script on the page can read it.
            assert page.evaluate("document.cookie") == ""
            assert page.evaluate("localStorage.getItem('fraudpipe.key')") is None
            (cookie,) = page.context.cookies()
            assert cookie["value"] == hash_key(READ_TOKEN)  # its digest, not the key
            assert cookie["httpOnly"], cookie
            assert cookie["sameSite"] == "Strict", cookie

            # Feedback with a read key is refused, with the reason shown.
            page.fill("#analyst", "ann")
            page.dispatch_event("#analyst", "change")
            page.fill("#key", READ_TOKEN)
            page.dispatch_event("#key", "change")
            row = page.locator("tr[data-tx='tx-9f2c01']")
            row.locator("button[data-label=fraud]").click()
            expect(page.locator("#message")).to_contain_text("403")
            # With the write key it is stored and shown.
            page.fill("#key", WRITE_TOKEN)
            page.dispatch_event("#key", "change")
            row.locator("button[data-label=fraud]").click()
            expect(row.locator("td.label")).to_have_text("fraud")
            page.locator("tr[data-tx='tx-9f2c02'] button[data-label=legit]").click()
            expect(page.locator("tr[data-tx='tx-9f2c02'] td.label")).to_have_text("legit")
            assert run(_labels(database_url)) == [
                ("tx-9f2c01", "fraud", "ann"),
                ("tx-9f2c02", "legit", "ann"),
            ]

            # Live: a new alert appears without reloading.
            page.goto(api.url + "/")
            later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
            run(
                insert_alerts(
                    database_url,
                    [alert_row("tx-c0ffee", user_id="dave", decision="BLOCK", decided=later)],
                )
            )
            expect(page.locator("tr[data-tx='tx-c0ffee']")).to_have_count(1, timeout=12_000)
            expect(page.locator("tr[data-tx='tx-9f2c01'] td.label")).to_have_text("fraud")

            shot = tmp_path / "api-analyst-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("FRAUDPIPE_UPDATE_SCREENSHOTS") == "1":
                shutil.copy(shot, DOCS / "api-analyst-page.png")
        finally:
            browser.close()


async def test_sign_in_keeps_the_key_from_scripts_and_the_page_runs_only_its_own_scripts(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="3")
    async with httpx.AsyncClient(base_url=api.url) as client:
        login = await client.get("/")
        assert login.status_code == 401
        policy = login.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "<script>" not in login.text  # nothing inline for the policy to allow
        assert (
            (await client.get("/ui/login.js")).headers["content-type"].startswith("text/javascript")
        )
        assert (await client.get("/ui/other.js")).status_code == 404

        # Another origin cannot sign this browser in; an unknown key is refused and counted.
        foreign = await client.post(
            "/ui/session", json={"key": READ_TOKEN}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert "fraudpipe_key" not in foreign.headers.get("set-cookie", "")
        unknown = await client.post("/ui/session", json={"key": "fpk_guess"})
        assert unknown.status_code == 401

        signed = await client.post("/ui/session", json={"key": WRITE_TOKEN})
        assert signed.status_code == 204
        cookie = signed.headers["set-cookie"]
        assert cookie.startswith(f"fraudpipe_key={hash_key(WRITE_TOKEN)};")  # never the key
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert f"Max-Age={12 * 3600}" in cookie
        assert "Secure" not in cookie  # plain HTTP, no trusted proxy saying otherwise
        page = await client.get("/")
        assert page.status_code == 200
        assert "content-security-policy" in page.headers
        assert '<script src="/ui/page.js"></script>' in page.text
        # The digest reads the page; it is not a key for the JSON API.
        as_bearer = {"Authorization": f"Bearer {hash_key(WRITE_TOKEN)}"}
        assert (await client.get("/v1/alerts", headers=as_bearer)).status_code == 401
        # A cookie whose key is gone is cleared, so the page's refresh stops presenting it.
        client.cookies.set("fraudpipe_key", hash_key("fpk_revoked"))
        stale = await client.get("/ui/alerts")
        assert stale.status_code == 401
        assert stale.headers["set-cookie"].startswith("fraudpipe_key=; Max-Age=0;")
    assert await metric(api, "fraudpipe_api_auth_failures_total") == 3


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_the_request_came_over_tls(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, API_TRUSTED_PROXIES="127.0.0.1")
    async with httpx.AsyncClient(base_url=api.url) as client:
        behind_tls = await client.post(
            "/ui/session", json={"key": READ_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert behind_tls.status_code == 204
        assert "; Secure" in behind_tls.headers["set-cookie"]
        plain = await client.post("/ui/session", json={"key": READ_TOKEN})
        assert "Secure" not in plain.headers["set-cookie"]
    # From an address that is not a trusted proxy the header is the client's word: ignored.
    async with from_address(api, "127.0.0.2") as other:
        claimed = await other.post(
            "/ui/session", json={"key": READ_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert "Secure" not in claimed.headers["set-cookie"]
