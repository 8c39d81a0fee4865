"""Signing in to the console in a real headless Chromium (Debian's), driven by Playwright: an admin's first
sign-in enrols a TOTP second factor (QR code shown, recovery codes shown once), then signs in with password
and code, controls a campaign through the session cookie (CSRF header sent by the page) and signs out.
The session cookie is HttpOnly: the page's script cannot read it, and no token is kept in the tab."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import expect

from dialer.campaigns import campaign_key
from gateway.accounts import AccountStore
from gateway.auth import AuthStore
from gateway.sessions import COOKIE
from tests.gateway_support import audit_events
from tests.test_dashboard_browser import CHROMIUM, browser, gw  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

PASSWORD = "a long enough passphrase"


def unexpected(errors: list[str]) -> list[str]:
    # A refused sign-in (401) or enrolment code (422) is an answer the browser reports as a failed resource
    # load; anything else (a script error, a CSP violation, another status) is a defect.
    return [e for e in errors if "status of 401" not in e and "status of 422" not in e]


async def test_admin_enrols_totp_then_signs_in_with_password_and_code(gw, browser):  # noqa: F811
    email = "ada@acme.example"
    await AuthStore(gw.redis).create_user("acme", email, "admin")
    await AccountStore(gw.redis).set_password("acme", email, PASSWORD)
    campaign = await gw.ready_campaign()
    cid = campaign["id"]
    assert (await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth("acme", "supervisor"))).status == 200

    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    url = str(gw.client.make_url("/"))

    await page.goto(url)
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#token")).to_be_hidden()  # the token form is folded away
    await page.fill("#email", email)
    await page.fill("#password", "not the password")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_have_text("Wrong email address or password.")

    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#enrol")).to_be_visible()
    # The secret arrives with the setup answer, after the enrolment screen shows: wait for it, not for the screen.
    await expect(page.locator("#enrol-secret")).to_have_text(re.compile(r"^\s*[A-Z2-7]{32}\s*$"))
    secret = (await page.locator("#enrol-secret").text_content() or "").strip()
    assert len(secret) == 32
    qr = page.locator("#enrol-qr")
    assert (await qr.get_attribute("src")).startswith("data:image/svg+xml;base64,")
    # The QR code renders (the CSP allows data: images); wait for it to decode.
    await page.wait_for_function("(() => { const i = document.getElementById('enrol-qr'); "
                                 "return i.complete && i.naturalWidth > 0; })()", timeout=5000)
    assert "issuer=Compliance%20dialer" in (await qr.get_attribute("title"))
    await page.fill("#enrol-code", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    await page.click("#enrol-form button[type=submit]")
    await expect(page.locator("#enrol-error")).to_contain_text("Wrong or already used code")
    await page.fill("#enrol-code", pyotp.TOTP(secret).now())
    await page.click("#enrol-form button[type=submit]")
    await expect(page.locator("#recovery-codes li")).to_have_count(10)
    await page.click("#recovery-done")
    await expect(page.locator("#who-text")).to_contain_text(f"{email} (admin) · acme")
    await page.click("#sign-out")
    await expect(page.locator("#login-form")).to_be_visible()

    # Second sign-in: password, then the code the page asks for.
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#code-row")).to_be_visible()
    await expect(page.locator("#sign-in-error")).to_contain_text("6-digit code")
    await page.fill("#code", "12345x")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_contain_text("Wrong or already used code")
    await page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))  # this step's code went to enrolment
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#who-text")).to_contain_text(f"{email} (admin)")

    card = page.locator(f'[data-campaign="{cid}"]')
    await expect(card.locator('[data-field="status"]')).to_have_text("running")
    await card.locator('[data-action="pause"]').click()  # a POST with the session cookie and the CSRF header
    await expect(card.locator('[data-field="status"]')).to_have_text("paused", timeout=3000)
    assert await gw.redis.hget(campaign_key("acme", cid), "status") == "paused"

    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
    assert COOKIE not in await page.evaluate("document.cookie")
    assert await page.evaluate("sessionStorage.length") == 0

    # Reloading keeps the session (server-side); signing out ends it server-side.
    await page.reload()
    await expect(page.locator("#who-text")).to_contain_text(f"{email} (admin)")
    await page.click("#sign-out")
    await expect(page.locator("#login-form")).to_be_visible()
    assert await gw.redis.hlen(f"t:{{acme}}:user:{email}:sessions") == 0
    await page.reload()
    await expect(page.locator("#login-form")).to_be_visible()

    history = await (await gw.client.get(f"/v1/campaigns/{cid}/history", headers=gw.auth())).json()
    assert history["items"][0]["action"] == "pause" and history["items"][0]["by"] == email
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    assert {"login.success", "login.failure", "mfa.enrol", "session.end"} <= set(actions)
    assert unexpected(errors) == []
    await context.close()


@pytest.mark.parametrize("width", [1440, 390])
async def test_sign_in_and_enrolment_fit_the_screen(gw, browser, width, tmp_path):  # noqa: F811
    """No horizontal overflow at desktop and phone widths. Screenshots go to $DIALER_SCREENSHOTS (the committed
    ones in docs/console/ were made with DIALER_SCREENSHOTS=docs/console)."""
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    email = "eve@acme.example"
    await AuthStore(gw.redis).create_user("acme", email, "admin")
    await AccountStore(gw.redis).set_password("acme", email, PASSWORD)
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    overflow = "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    await page.goto(str(gw.client.make_url("/")))
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#sign-out")).to_be_hidden()  # nobody to sign out yet
    assert not await page.evaluate(overflow)
    await page.screenshot(path=str(shots / f"sign-in-{width}.png"))
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#enrol-secret")).not_to_be_empty()
    await expect(page.locator("#board")).to_be_hidden()
    await page.wait_for_function("(() => { const i = document.getElementById('enrol-qr'); "
                                 "return i.complete && i.naturalWidth > 0; })()", timeout=5000)
    assert not await page.evaluate(overflow)
    await page.screenshot(path=str(shots / f"mfa-enrolment-{width}.png"))
    await context.close()
