"""Issue 19 in the console, in a real headless Chromium: a suspended campaign says so (status and who/why), the
month's usage and budgets show, and open data-subject requests are listed with the overdue one flagged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis as redis_lib
from playwright.async_api import expect

from dialer import holds, subject_requests
from tests.test_dashboard_browser import CHROMIUM, browser, gw, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


async def test_holds_usage_and_requests_are_where_people_look(gw, browser):  # noqa: F811
    campaign = (await gw.ready_campaign())["id"]
    start = await gw.client.post(f"/v1/campaigns/{campaign}/start", headers=gw.auth("acme", "supervisor"))
    assert start.status == 200, await start.text()
    await gw.client.put("/v1/usage/plan", headers=gw.auth(), json={"budgets": [
        {"measure": "attempts", "period": "month", "limit": 1000, "hard_stop": True}]})

    def record() -> None:
        client = redis_lib.Redis.from_url(gw.redis_url)
        try:
            subject_requests.record_request(client, "acme", kind="erasure", regime="GDPR",
                                            subject=subject_requests.Subject(contact_id="k1"),
                                            received_at=datetime(2026, 1, 5, tzinfo=UTC), by="test",
                                            now=datetime.now(UTC), reference="ticket 9")
        finally:
            client.close()

    await asyncio.to_thread(record)
    page = await browser.new_page()
    await sign_in(page, str(gw.client.make_url("/")), gw.tokens[("acme", "admin")])
    card = page.locator(f"article.campaign[data-campaign='{campaign}']")
    await expect(card.locator("[data-field=status]")).to_have_text("running")
    # the admin suspends the campaign from its card, saying why
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("complaint 42")))
    await card.locator('[data-kill="suspend"]').click()
    await expect(card.locator("[data-field=status]")).to_have_text("running · held")
    await expect(card.locator('[data-kill="unsuspend"]')).to_be_visible()
    await expect(card.locator("[data-field=pacing]")).to_contain_text("complaint 42")
    await expect(page.locator("#usage-figures")).to_contain_text("Billable minutes")
    await expect(page.locator("#budgets")).to_contain_text("0 of 1,000")
    await expect(page.locator("#requests")).to_contain_text("erasure (GDPR)")
    await expect(page.locator("#requests")).to_contain_text("OVERDUE")
    # the operator suspends the whole tenant: the usage panel says so
    client = redis_lib.Redis.from_url(gw.redis_url)
    try:
        holds.suspend_tenant(client, "acme", reason="abuse report 12", by="operator:alice", at=datetime.now(UTC))
    finally:
        client.close()
    await page.reload()
    await expect(page.locator("#holds")).to_contain_text("abuse report 12")
    card = page.locator(f"article.campaign[data-campaign='{campaign}']")
    await card.locator('[data-kill="unsuspend"]').click()
    await expect(card.locator("[data-field=pacing]")).not_to_contain_text("complaint 42")
    await expect(card.locator("[data-field=pacing]")).to_contain_text("abuse report 12")  # the tenant is still held
    supervisor = await browser.new_page()
    await sign_in(supervisor, str(gw.client.make_url("/")), gw.tokens[("acme", "supervisor")])
    other = supervisor.locator(f"article.campaign[data-campaign='{campaign}']")
    await expect(other.locator("[data-field=status]")).to_have_text("running · held")
    await expect(other.locator('[data-kill="suspend"]')).to_be_hidden()  # admins only
