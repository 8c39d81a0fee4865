"""The console's Operator page in a real headless Chromium (Playwright), against a running gateway on a real Redis:
an admin of an operator tenant suspends a client tenant with a reason and lifts it; the client's admin has no such
page (the suspended tenant's board showing the reason is tests/test_business_browser.py). Fits 1440 px and 390 px;
screenshots go to $DIALER_SCREENSHOTS (the committed docs/console/operator-*.png were made with
DIALER_SCREENSHOTS=docs/console)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import expect

from dialer import holds
from gateway.auth import AuthStore
from tests.gateway_support import start_gateway, stop_gateway
from tests.test_console_admin_browser import fits, signed_in, unexpected
from tests.test_dashboard_browser import CHROMIUM, browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_OPERATOR_TENANTS="ops")
    store = AuthStore(gateway.redis)
    await store.create_tenant("ops", "The platform")
    await store.create_user("ops", "admin-user", "admin")
    yield gateway
    await stop_gateway(gateway)


@pytest.mark.parametrize("width", [1440, 390])
async def test_an_operator_suspends_and_lifts_a_tenant_from_the_console(gw, browser, width, tmp_path):  # noqa: F811
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context, page, errors, url = await signed_in(gw, browser, "ops", "admin-user", width=width)
    await page.goto(url + "#/operator")
    if width > 600:
        await expect(page.locator('#nav a[data-route="operator"]')).to_be_visible()
    await expect(page.locator('#op-tenants [data-tenant="acme"]')).to_have_attribute("data-suspended", "0")
    await page.select_option("#op-tenant", "acme")
    await page.click("#op-suspend")  # no reason: the API's words say which field
    await expect(page.locator("#operator-page .note.error")).to_contain_text("Reason: ")  # field.reason
    await page.fill("#op-reason", "chargebacks under review")
    await page.click("#op-suspend")
    row = page.locator('#op-tenants [data-tenant="acme"]')
    await expect(row).to_have_attribute("data-suspended", "1")
    await expect(row).to_contain_text("chargebacks under review")
    held = await gw.redis.get(holds.operator_key("acme"))
    assert held and "chargebacks under review" in held  # the hold the gate's reserve script reads
    assert await fits(page)
    await page.screenshot(path=str(shots / f"operator-{width}.png"), full_page=True)
    await page.click("#op-resume")
    await expect(row).to_have_attribute("data-suspended", "0")
    assert await gw.redis.get(holds.operator_key("acme")) is None
    assert unexpected(errors) == []
    await context.close()


async def test_a_client_admin_has_no_operator_page(gw, browser):  # noqa: F811
    await holds_suspended(gw)
    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user")
    await page.goto(url + "#/users")
    await expect(page.locator('#nav a[data-route="users"]')).to_be_visible()
    await expect(page.locator('#nav a[data-route="operator"]')).to_have_count(0)
    await page.goto(url + "#/operator")
    await expect(page.locator("#view .error")).to_be_visible()  # "not allowed", and no call was made
    await expect(page.locator("#operator-page")).to_have_count(0)
    assert unexpected(errors) == []
    await context.close()


async def holds_suspended(gw) -> None:
    resp = await gw.client.post("/v1/operator/tenants/globex/suspend", json={"reason": "x"},
                                headers=gw.auth("acme", "admin"))
    assert resp.status == 403  # acme is a client here, not an operator
