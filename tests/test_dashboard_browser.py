"""The supervisor dashboard in a real headless Chromium (Debian's), driven by Playwright.

Sign in with a token, watch a running campaign's tiles follow what the engine writes to Redis,
see the abandon-rate alert near the cap, pause the campaign and see it paused; an auditor sees
no control buttons. Needs /usr/bin/chromium (apt-get install chromium) and `pip install playwright`
(never `playwright install`: we use the system browser).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime

import pytest
from playwright.async_api import async_playwright, expect

from dialer import livestats
from dialer.campaigns import campaign_key
from tests.gateway_support import start_gateway, stop_gateway

CHROMIUM = os.environ.get("DIALER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture
async def gw(redis_url):
    gateway = await start_gateway(redis_url)
    yield gateway
    await stop_gateway(gateway)


@pytest.fixture
async def browser(chromium_endpoint):
    """The test process's Chromium (tests/conftest.py): the test's contexts are closed when it ends."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.connect_over_cdp(chromium_endpoint)
        yield chromium
        await chromium.close()  # over CDP: closes the contexts this test made and disconnects


async def engine_writes(redis, tenant, campaign, **gauges):
    pipe = redis.pipeline(transaction=True)
    livestats.queue_gauges(pipe, tenant, campaign, gauges, datetime.now(UTC))
    await pipe.execute()


async def sign_in(page, url, token):
    await page.goto(url)
    await page.click("#token-sign-in summary")  # people sign in with a password; tokens are one click away
    await page.fill("#token", token)
    await page.click("#sign-in-form button[type=submit]")


async def test_sign_in_watch_and_pause(gw, browser):
    campaign = await gw.ready_campaign()
    cid = campaign["id"]
    assert (await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth("acme", "supervisor"))).status == 200
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())

    await sign_in(page, str(gw.client.make_url("/")), gw.tokens[("acme", "supervisor")])
    await expect(page.locator("#who-text")).to_contain_text("supervisor-user (supervisor)")
    card = page.locator(f'[data-campaign="{cid}"]')
    await expect(card.locator('[data-field="status"]')).to_have_text("running")
    await expect(card.locator('[data-field="name"]')).to_have_text("Spring offer")

    for n in (3, 11):
        await engine_writes(gw.redis, "acme", cid, dialing=n, ringing=n + 1, connected=2, agents_free=1,
                            agents_busy=2, calls_per_minute=n * 2)
        await expect(card.locator('[data-tile="dialing"]')).to_have_text(str(n), timeout=2000)
        await expect(card.locator('[data-tile="ringing"]')).to_have_text(str(n + 1), timeout=2000)
        await expect(card.locator('[data-tile="calls_per_minute"]')).to_have_text(str(n * 2), timeout=2000)

    alert = card.locator('[data-field="abandon-alert"]')
    await expect(alert).to_be_hidden()
    await engine_writes(gw.redis, "acme", cid, abandon_rate_24h=0.026, abandon_rate_30d=0.01)
    await expect(alert).to_be_visible(timeout=2000)
    await expect(alert).to_contain_text("nearing the cap")
    await engine_writes(gw.redis, "acme", cid, abandon_rate_24h=0.031)
    await expect(alert).to_contain_text("over the cap", timeout=2000)

    # the queue's agents (shared with other campaigns), this campaign's calls towards them and its share, and why
    # it paces as it does (issue 15)
    await engine_writes(gw.redis, "acme", cid, queue_staffed=6, queue_free=1, queue_on_call=3, queue_wrapup=1,
                        queue_paused=1, in_flight=2, share=0.5)
    pipe = gw.redis.pipeline()
    livestats.queue_pacing(pipe, "acme", cid, "cap-reached", "abandon rate 4.1% (4 of 97 answered) over the legal "
                           "window is over the 3.0% cap: only calls with an agent reserved are placed")
    await pipe.execute()
    for tile, text in (("queue_staffed", "6"), ("queue_free", "1"), ("queue_on_call", "3"), ("queue_wrapup", "1"),
                       ("queue_paused", "1"), ("in_flight", "2"), ("share", "50%")):
        await expect(card.locator(f'[data-tile="{tile}"]')).to_have_text(text, timeout=2000)
    await expect(card.locator('[data-field="pacing"]')).to_have_text(  # in words; the engine's figures on hover
        "Pacing: abandon cap reached: only calls with an agent reserved", timeout=2000)
    await expect(card.locator('[data-field="pacing"]')).to_have_attribute(
        "title", re.compile(r"^abandon rate 4\.1% \(4 of 97 answered\)"))
    pbx_alert = card.locator('[data-field="pbx-alert"]')  # a runtime saw Asterisk refuse calls (restarting)
    await expect(pbx_alert).to_be_hidden()
    await gw.redis.hset("dialer:servers:draining", "10.0.0.5:5038", json.dumps({
        "server": "pbx-a", "message": "Asterisk is shutting down", "since": time.time(), "until": time.time() + 60}))
    await expect(pbx_alert).to_contain_text("Server pbx-a is refusing calls since", timeout=2000)
    await expect(pbx_alert).to_contain_text("(Asterisk is shutting down): no calls placed there.")
    await gw.redis.delete("dialer:servers:draining")
    await expect(pbx_alert).to_be_hidden(timeout=2000)

    pipe = gw.redis.pipeline()
    livestats.queue_denial(pipe, "acme", cid, "OUTSIDE_CALLING_HOURS")
    livestats.queue_attempt(pipe, "acme", cid, datetime.now(UTC))
    livestats.queue_disposition(pipe, "acme", cid, "answered", datetime.now(UTC))
    await pipe.execute()
    await expect(card.locator('[data-reason="OUTSIDE_CALLING_HOURS"] .count')).to_have_text("1", timeout=2000)
    await expect(card.locator('[data-field="chart"] svg rect')).to_have_count(24 + 1, timeout=2000)

    pause = card.locator('[data-action="pause"]')
    await expect(pause).to_be_visible()
    await expect(card.locator('[data-action="resume"]')).to_be_hidden()
    await pause.click()
    await expect(card.locator('[data-field="status"]')).to_have_text("paused", timeout=2000)
    await expect(card.locator('[data-action="resume"]')).to_be_visible()
    await expect(pause).to_be_hidden()
    assert await gw.redis.hget(campaign_key("acme", cid), "status") == "paused"
    history = await (await gw.client.get(f"/v1/campaigns/{cid}/history", headers=gw.auth())).json()
    assert history["items"][0]["action"] == "pause" and history["items"][0]["by"] == "supervisor-user"

    # Resumed elsewhere (another supervisor, the API): the page follows through the stream.
    await gw.client.post(f"/v1/campaigns/{cid}/resume", headers=gw.auth("acme", "admin"))
    await expect(card.locator('[data-field="status"]')).to_have_text("running", timeout=2000)

    assert await page.evaluate("sessionStorage.getItem('dialerToken')") == gw.tokens[("acme", "supervisor")]
    await page.click("#sign-out")
    await expect(page.locator("#sign-in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('dialerToken')") is None
    assert errors == []


async def test_auditor_sees_no_buttons_and_no_other_tenant(gw, browser):
    mine = (await gw.ready_campaign())["id"]
    theirs = (await gw.ready_campaign("globex"))["id"]
    for tenant, cid in (("acme", mine), ("globex", theirs)):
        await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth(tenant, "supervisor"))
    page = await browser.new_page()
    await sign_in(page, str(gw.client.make_url("/")), gw.tokens[("acme", "auditor")])
    card = page.locator(f'[data-campaign="{mine}"]')
    await expect(card.locator('[data-field="status"]')).to_have_text("running")
    await expect(card.locator("[data-action]:visible")).to_have_count(0)
    await expect(page.locator(f'[data-campaign="{theirs}"]')).to_have_count(0)


async def test_bad_token_refused_and_uploader_sees_only_its_pages(gw, browser):
    page = await browser.new_page()
    await sign_in(page, str(gw.client.make_url("/")), "dlr_0000000000_notavalidtokennotavalidtoken")
    await expect(page.locator("#sign-in-error")).to_contain_text("not valid")
    # An uploader may not watch live figures: no "Live" entry, a home page it may open, and the live page's
    # address answers in words instead of an empty board.
    await sign_in(page, str(gw.client.make_url("/")), gw.tokens[("acme", "uploader")])
    await expect(page.locator("#nav a[data-route='campaigns']")).to_be_visible()
    await expect(page.locator("#nav a[data-route='live']")).to_have_count(0)
    await page.goto(str(gw.client.make_url("/")) + "#/live")
    await expect(page.locator("#view [role=alert]")).to_contain_text("Your role (uploader) cannot open this page")
    await expect(page.locator("#board")).to_be_hidden()
