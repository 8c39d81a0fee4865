"""Issue 19's actions in the console, in a real headless Chromium (Playwright) against a running gateway on a real
Redis: a tenant admin manages webhook endpoints (register, a private address refused in words, the secret shown once,
rotation with two valid secrets, redelivery of a dead letter, delete), changes the budgets and billing rounding on
the live board, and moves data-subject requests (forwarded, refused with a reason, extended with a reason). Auditors
read without acting; supervisors see no webhooks and cannot change budgets; another tenant's endpoints never show.
Fits 1440 px and 390 px; screenshots go to $DIALER_SCREENSHOTS (docs/console/*.png were made with
DIALER_SCREENSHOTS=docs/console)."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib
from playwright.async_api import expect

from dialer import subject_requests
from dialer.webhooks import queue as webhook_queue
from tests.test_console_admin_browser import fits, gw, signed_in, unexpected  # noqa: F401  (fixture)
from tests.test_dashboard_browser import CHROMIUM, browser  # noqa: F401  (fixture)
from tests.test_gateway_routes import webhook_store

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


def shots_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def dead_letter(gateway, tenant: str) -> tuple[str, str]:
    """A delivery the worker gave up on, recorded as dialer/webhooks/delivery.py records one."""
    endpoint, _ = await webhook_store(gateway).create(tenant, f"https://hooks.example.com/{tenant}",
                                                      ["optout.recorded"])
    event_id = f"evt_dead_{tenant}"
    await gateway.redis.hset(webhook_queue.delivery_key(tenant, endpoint.id, event_id), mapping={
        "tenant": tenant, "endpoint": endpoint.id, "event_id": event_id, "type": "optout.recorded",
        "key": "+33145678901", "body": "{}", "created_at": "0", "attempts": "7", "state": "dead",
        "last_status": "500", "last_error": "server error", "last_at": datetime.now(UTC).isoformat()})
    await gateway.redis.zadd(webhook_queue.dead_key(tenant), {f"{endpoint.id}:{event_id}": 1})
    return endpoint.id, event_id


@pytest.mark.parametrize("width", [1440, 390])
async def test_an_admin_manages_webhooks_from_the_console(gw, browser, width, tmp_path):  # noqa: F811
    acme_dead_endpoint, event_id = await dead_letter(gw, "acme")
    globex_endpoint, _ = await dead_letter(gw, "globex")  # another tenant's: never shown to acme
    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user", width=width)
    await page.goto(url + "#/webhooks")
    if width > 600:
        await expect(page.locator('#nav a[data-route="webhooks"]')).to_be_visible()
    await expect(page.locator(f'#webhook-endpoints [data-endpoint="{acme_dead_endpoint}"]')).to_be_visible()
    await expect(page.locator(f'[data-endpoint="{globex_endpoint}"]')).to_have_count(0)
    await expect(page.locator(f'#webhook-dead [data-dead="{event_id}"]')).to_contain_text("server error")
    await expect(page.locator('[data-dead="evt_dead_globex"]')).to_have_count(0)

    # a private address is refused, and the console says why (the server's reason after the generic words)
    await page.fill("#webhook-url", "https://10.1.2.3/hooks")
    await page.check('input[name=webhook-event][value="optout.recorded"]')
    await page.click("#webhook-register")
    refusal = page.locator("#webhook-result.error")
    await expect(refusal).to_contain_text("This value is not accepted.")
    await expect(refusal).to_contain_text("10.1.2.3 is a private address")
    # a good one: registered, its secret shown once
    await page.fill("#webhook-url", "https://crm.example.com/dialer")
    await page.fill("#webhook-description", "CRM")
    await page.check('input[name=webhook-event][value="call.outcome"]')
    await page.click("#webhook-register")
    await expect(page.locator("#webhook-secret")).to_have_text(re.compile(r"^whsec_"))
    first_secret = await page.locator("#webhook-secret").text_content()
    listed = await (await gw.client.get("/v1/webhooks", headers=gw.auth())).json()
    created = next(e for e in listed["items"] if e["url"] == "https://crm.example.com/dialer")
    assert sorted(created["events"]) == ["call.outcome", "optout.recorded"]
    row = page.locator(f'#webhook-endpoints [data-endpoint="{created["id"]}"]')
    await expect(row).to_contain_text("call outcome")
    await expect(row).to_contain_text("one secret")
    assert first_secret not in (await page.content()).replace(first_secret, "", 1)  # shown once on the page

    # rotation: a new secret shown once; the old one keeps signing (two valid secrets)
    await row.locator("[data-rotate]").click()
    await expect(row).to_contain_text("rotating")
    await expect(page.locator("#webhook-secret")).not_to_have_text(first_secret)
    rotated = await (await gw.client.get(f"/v1/webhooks/{created['id']}", headers=gw.auth())).json()
    assert len(rotated["secrets"]) == 2 and rotated["secrets"][1]["expires_at"]

    assert await fits(page)
    await page.screenshot(path=str(shots_dir(tmp_path) / f"webhooks-{width}.png"), full_page=True)

    # the dead letter goes back to its queue
    await page.locator(f'#webhook-dead [data-dead="{event_id}"] [data-redeliver]').click()
    await expect(page.locator("#webhooks-status.ok")).to_contain_text(event_id)
    await expect(page.locator(f'[data-dead="{event_id}"]')).to_have_count(0)
    assert await gw.redis.zcard(webhook_queue.dead_key("acme")) == 0
    assert await gw.redis.zcard(webhook_queue.dead_key("globex")) == 1

    await row.locator("[data-delete]").click()  # the confirm dialog is accepted by signed_in's handler
    await expect(row).to_have_count(0)
    assert (await gw.client.get(f"/v1/webhooks/{created['id']}", headers=gw.auth())).status == 404
    assert unexpected(errors) == []
    await context.close()


async def test_an_auditor_reads_webhooks_and_a_supervisor_has_none(gw, browser):  # noqa: F811
    _, event_id = await dead_letter(gw, "acme")
    context, page, errors, url = await signed_in(gw, browser, "acme", "auditor-user")
    await page.goto(url + "#/webhooks")
    await expect(page.locator(f'[data-dead="{event_id}"]')).to_be_visible()
    await expect(page.locator("#webhook-form")).to_have_count(0)
    await expect(page.locator("#webhooks-page button")).to_have_count(0)
    assert unexpected(errors) == []
    await context.close()
    context, page, errors, url = await signed_in(gw, browser, "acme", "supervisor-user")
    await page.goto(url + "#/live")
    await expect(page.locator('#nav a[data-route="live"]')).to_be_visible()
    await expect(page.locator('#nav a[data-route="webhooks"]')).to_have_count(0)
    await expect(page.locator("#usage-panel")).to_be_visible()
    await expect(page.locator("#plan-edit")).to_have_count(0)  # budgets are the admin's
    assert unexpected(errors) == []
    await context.close()


async def recorded(gateway, *refs: str) -> dict[str, str]:
    def record() -> dict[str, str]:
        client = redis_lib.Redis.from_url(gateway.redis_url)
        try:
            return {ref: subject_requests.record_request(
                client, "acme", kind="access", regime="GDPR", subject=subject_requests.Subject(contact_id=ref),
                received_at=datetime.now(UTC), by="test", now=datetime.now(UTC), reference=ref)["id"] for ref in refs}
        finally:
            client.close()

    return await asyncio.to_thread(record)


@pytest.mark.parametrize("width", [1440, 390])
async def test_an_admin_sets_budgets_and_moves_requests_on_the_live_board(gw, browser, width, tmp_path):  # noqa: F811
    ids = await recorded(gw, "ticket-1", "ticket-2")
    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user", width=width)
    await page.goto(url + "#/live")
    await expect(page.locator("#usage-figures")).to_contain_text("per second")  # the billing rounding, read

    # budgets: a typo in the alerts is refused naming the budget and field; then saved
    await page.click("#plan-edit summary")
    await expect(page.locator("#plan-edit[data-loaded]")).to_be_visible()  # the stored plan is in the form
    await page.select_option("#plan-rounding", "per_6_seconds")
    await page.click("#plan-add")
    budget = page.locator("[data-budget-row]").first
    await budget.locator('[data-budget="measure"]').select_option("attempts")
    await budget.locator('[data-budget="limit"]').fill("500")
    await budget.locator('[data-budget="alerts"]').fill("80, lots")
    await page.click("#plan-save")
    await expect(page.locator("#plan-status.error")).to_contain_text("Budget 1: alerts")
    await budget.locator('[data-budget="alerts"]').fill("50, 100")
    await budget.locator('[data-budget="hard_stop"]').check()
    await page.click("#plan-save")
    await expect(page.locator("#plan-status.ok")).to_be_visible()
    await expect(page.locator("#budgets")).to_contain_text("0 of 500")
    await expect(page.locator("#budgets")).to_contain_text("hard stop")
    plan = await (await gw.client.get("/v1/usage/plan", headers=gw.auth())).json()
    assert plan["rounding"] == "per_6_seconds"
    assert plan["budgets"] == [{"measure": "attempts", "period": "month", "limit": 500, "alerts": [50, 100],
                                "hard_stop": True}]

    # requests: a refusal needs its reason; with one, the request closes
    first = page.locator(f'#requests [data-request="{ids["ticket-1"]}"]')
    await first.locator('[data-dsr="refused"]').click()
    await expect(page.locator("#dsr-status.error")).to_contain_text("reason")
    await page.fill("#dsr-reason", "identity not verified")
    await first.locator('[data-dsr="refused"]').click()
    await expect(page.locator("#dsr-status.ok")).to_contain_text("refused")
    await expect(first).to_have_count(0)
    second = page.locator(f'#requests [data-request="{ids["ticket-2"]}"]')
    await second.locator('[data-dsr="forwarded"]').click()
    await expect(second).to_contain_text("forwarded")
    await expect(second.locator('[data-dsr="forwarded"]')).to_have_count(0)
    await page.fill("#dsr-reason", "many requests this month")
    await second.locator('[data-dsr="extend"]').click()
    await expect(second).to_contain_text("extended")
    await expect(second.locator('[data-dsr="extend"]')).to_have_count(0)
    refused = await (await gw.client.get(f"/v1/subject-requests/{ids['ticket-1']}", headers=gw.auth())).json()
    assert refused["state"] == "refused" and refused["history"][-1]["reason"] == "identity not verified"
    moved = await (await gw.client.get(f"/v1/subject-requests/{ids['ticket-2']}", headers=gw.auth())).json()
    assert moved["state"] == "forwarded" and moved["extended"] is True
    assert await fits(page)
    await page.screenshot(path=str(shots_dir(tmp_path) / f"live-business-{width}.png"), full_page=True)
    assert unexpected(errors) == []
    await context.close()

    # an auditor reads the same list without its actions
    context, page, errors, url = await signed_in(gw, browser, "acme", "auditor-user", width=width)
    await page.goto(url + "#/live")
    await expect(page.locator(f'#requests [data-request="{ids["ticket-2"]}"]')).to_contain_text("extended")
    await expect(page.locator("#requests [data-dsr]")).to_have_count(0)
    await expect(page.locator("#dsr-reason")).to_have_count(0)
    await expect(page.locator("#plan-edit")).to_have_count(0)
    assert unexpected(errors) == []
    await context.close()


async def test_a_french_admin_reads_the_webhooks_page_and_its_refusal_in_french(gw, browser):  # noqa: F811
    resp = await gw.client.put("/v1/me/preferences", json={"language": "fr", "time_zone": "Europe/Paris"},
                               headers=gw.auth())
    assert resp.status == 200, await resp.text()
    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user", width=390)
    await page.goto(url + "#/webhooks")
    await expect(page.locator("#webhooks-page h2").first).to_have_text("Enregistrer un point d'arrivée")
    await page.fill("#webhook-url", "http://crm.example.com/dialer")
    await page.check('input[name=webhook-event][value="call.outcome"]')
    await page.click("#webhook-register")
    # the French words first, then the server's reason (its own English)
    await expect(page.locator("#webhook-result.error")).to_have_text(
        "Adresse (URL) : Cette valeur n'est pas acceptée. Le serveur répond : the URL must start with https:// "
        "(plain http is not allowed by the operator)")
    await page.goto(url + "#/live")
    await expect(page.locator("#plan-edit summary")).to_have_text("Modifier les budgets et l'arrondi de facturation")
    assert unexpected(errors) == []
    await context.close()
