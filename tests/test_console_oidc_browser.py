"""Single sign-on in a real headless Chromium (Debian's, driven by Playwright): the console's "Sign in with
<provider>" button, the real OpenID provider's own sign-in page (oidc-provider, started by the test), and back in
the console as the mapped user with the same HttpOnly, SameSite=Strict session cookie as a password sign-in.
A person with no console account comes back to the sign-in page with the refusal in words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.auth import AuthStore
from gateway.sessions import COOKIE
from tests.gateway_support import audit_events
from tests.test_console_oidc import GATEWAY_PORT, gw, provider  # noqa: F401  (fixtures)
from tests.test_dashboard_browser import CHROMIUM, browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


def unexpected(errors: list[str]) -> list[str]:
    # The page's first GET /v1/session while signed out is fine; a script error or CSP violation is not.
    return [e for e in errors if "status of 401" not in e]


async def sign_in_at_the_provider(page, login: str) -> None:
    await expect(page.locator('input[name="login"]')).to_be_visible()
    await page.fill('input[name="login"]', login)
    await page.fill('input[name="password"]', "any password")
    await page.click('button[type="submit"]')


async def test_sign_in_with_the_provider_lands_in_the_console(gw, browser, tmp_path):  # noqa: F811
    await AuthStore(gw.redis).create_user("acme", "sam@acme.example", "supervisor")
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    console = f"http://127.0.0.1:{GATEWAY_PORT}/"
    # Only our pages' errors: the provider's development page asks for web fonts and a favicon it cannot get.
    page.on("console", lambda msg: errors.append(f"{msg.text} ({page.url})")
            if msg.type == "error" and page.url.startswith(console) else None)

    await page.goto(console)
    button = page.get_by_role("button", name="Sign in with Local provider")
    await expect(button).to_be_visible()
    await button.click()
    assert not page.url.startswith(console)  # the provider's own page, not ours
    await sign_in_at_the_provider(page, "sam@acme.example")
    await expect(page.locator("#who-text")).to_contain_text("sam@acme.example (supervisor) · acme")
    assert page.url.split("#")[0] == console  # the console's root (the router adds the page: #/live)

    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
    assert COOKIE not in await page.evaluate("document.cookie")
    await page.reload()  # a server-side session: still signed in
    await expect(page.locator("#who-text")).to_contain_text("sam@acme.example (supervisor)")
    await page.click("#sign-out")  # a DELETE with the CSRF header, as after a password sign-in
    await expect(page.locator("#login-form")).to_be_visible()
    assert await gw.redis.hlen("t:{acme}:user:sam@acme.example:sessions") == 0
    assert unexpected(errors) == []
    # The sign-in page with its button fits a desktop and a phone. Screenshots go to $DIALER_SCREENSHOTS (the
    # committed docs/console/sign-in-sso-*.png were made with DIALER_SCREENSHOTS=docs/console).
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for width in (390, 1440):
        await page.set_viewport_size({"width": width, "height": 900})
        assert not await page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
        await page.screenshot(path=str(shots / f"sign-in-sso-{width}.png"), full_page=True)

    # Someone the provider knows but the console does not: back on the sign-in page, told why.
    await context.clear_cookies()  # signed out at the provider too
    await page.get_by_role("button", name="Sign in with Local provider").click()
    await sign_in_at_the_provider(page, "stranger@acme.example")
    await expect(page.locator("#sign-in-error")).to_have_text(
        "There is no console account for you here: ask your administrator to create one.")  # i18n error.unknown_user
    assert page.url == console  # the refusal code is taken out of the address bar
    await expect(page.locator("#who")).to_be_hidden()
    await context.close()

    events = [(e["action"], e.get("reason"), e["actor"]) for e in await audit_events(gw, "acme")
              if e["action"].startswith("login.")]
    assert events == [("login.success", None, "sam@acme.example"),
                      ("login.refused", "unknown_user", "stranger@acme.example")]
