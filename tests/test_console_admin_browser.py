"""The console's Lists, Compliance, Audit and Users pages in a real headless Chromium (Debian's), driven by Playwright,
against a running gateway on a real Redis, with the real import jobs (RQ worker in burst mode) and the real gate.

Journeys: an uploader uploads a messy list (preview of the format and mapping first), watches it import and reads
its errors, and sees nothing it may not touch; a file the import refuses as a whole has a report that says why;
a supervisor looks up a number and sees why it is denied (reasons in words, the next allowed time in the person's
local time); an admin invites a user, resets their second factor and manages API tokens; an auditor of one tenant
never sees another tenant's lists, imports, audit trail or users, on the pages or through the API. Every page fits
1440 px and 390 px without horizontal overflow; screenshots go to $DIALER_SCREENSHOTS (the committed ones in
docs/console/ were made with DIALER_SCREENSHOTS=docs/console).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pyotp
import pytest
import redis
from playwright.async_api import expect

from dialer.facts import FactStore
from dialer.jobs import QUEUES, InlineWorker
from gateway.accounts import AccountStore
from gateway.auth import AuthStore
from gateway.sessions import COOKIE, SessionStore
from rules.model import Attempt
from tests.gateway_support import audit_events, imported_list, start_gateway, stop_gateway
from tests.test_dashboard_browser import CHROMIUM, browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

# A list as clients send them: semicolons, French headers, a bad number, a duplicate, an empty phone, a note column
# (not imported: data minimization).
MESSY = ("Prénom;Nom;Téléphone portable;Code postal;Remarque\n"
         "Ann;Martin;06 12 34 56 78;75011;vip\n"
         "Bob;Durand;+33 6 98 76 54 32;69003;\n"
         "Eve;Petit;pas de numéro;13001;\n"
         "Zoé;Moreau;0612345678;75011;again\n"
         "Luc;Roux;;33000;\n")
# Bob gave his consent (telemarketing of French consumers needs it); Ann did not.
CONSENTED = ("phone,first_name,country,consent_given_at,consent_source,consent_written\n"
             "+33145678901,Ann,FR,,,\n+33145678902,Bob,FR,2026-01-05,web form,yes\n")


@pytest.fixture
async def gw(redis_url, tmp_path):
    gateway = await start_gateway(redis_url, DIALER_GATEWAY_UPLOAD_DIR=str(tmp_path / "uploads"))
    yield gateway
    await stop_gateway(gateway)


def work(redis_url: str) -> None:
    """Run every queued job (imports, registry loads) to the end, as `dialer worker --burst` would. RQ installs
    signal handlers, so this runs on the main thread (the page waits meanwhile)."""
    client = redis.Redis.from_url(redis_url)
    InlineWorker(list(QUEUES), connection=client).work(burst=True)
    client.close()


async def signed_in(gw, browser, tenant: str, user: str, width: int = 1440):  # noqa: F811
    """A browser context with a console session of `user` (its record gives the role), and a page with an error
    collector. The sign-in form itself is covered by tests/test_console_browser.py."""
    cookie, _ = await SessionStore(gw.redis).create(tenant, user, "full", time.time())
    context = await browser.new_context(viewport={"width": width, "height": 900})
    url = str(gw.client.make_url("/"))
    await context.add_cookies([{"name": COOKIE, "value": cookie, "url": url, "httpOnly": True, "sameSite": "Strict"}])
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page, errors, url


def unexpected(errors: list[str]) -> list[str]:
    # A refused request the page explains (404 of another tenant's id, 422 of a bad field) is reported by the browser
    # as a failed resource load; anything else (a script error, a CSP violation) is a defect.
    return [e for e in errors if not any(f"status of {s}" in e for s in (403, 404, 422))]


async def fits(page) -> bool:
    return await page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")


async def loaded_registry(gw) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"0145678901\n0145678999\n", filename="bloctel.txt")
    resp = await gw.client.post("/v1/registries/bloctel/imports", data=form, headers=gw.auth())
    assert resp.status == 202, await resp.text()
    work(gw.redis_url)


async def test_uploader_uploads_a_messy_list_reads_its_errors_and_sees_only_what_it_may_touch(gw, browser):  # noqa: F811
    context, page, errors, url = await signed_in(gw, browser, "acme", "uploader-user")
    await page.goto(url + "#/lists")
    nav = page.locator("#nav")
    await expect(nav.locator('a[data-route="lists"]')).to_be_visible()
    for hidden in ("compliance", "audit", "users", "live"):
        await expect(nav.locator(f'a[data-route="{hidden}"]')).to_have_count(0)

    await page.fill("#upload-list", "spring")
    await page.set_input_files("#upload-file", files=[{"name": "clients.csv", "mimeType": "text/csv",
                                                       "buffer": MESSY.encode("cp1252")}])
    await expect(page.locator("#preview-format")).to_contain_text("semicolon")
    await expect(page.locator("#preview-format")).to_contain_text("cp1252")
    mapping = page.locator("#preview-view select")
    await expect(mapping).to_have_count(5)
    assert await mapping.nth(2).input_value() == "phone"  # "Téléphone portable"
    assert await mapping.nth(0).input_value() == "first_name"
    assert await mapping.nth(4).input_value() == "ignore"  # "Remarque": not imported
    rows = page.locator("#preview-view tbody tr")
    await expect(rows.filter(has_text="pas de numéro")).to_contain_text("rejected")
    await page.click("#import-button")
    await expect(page.locator("#import-status")).to_have_text("queued")
    work(gw.redis_url)
    await expect(page.locator("#import-status")).to_have_text("imported", timeout=10_000)
    await expect(page.locator('[data-count="rows_done"]')).to_have_text("5")
    await expect(page.locator('[data-sum="contacts_added"]')).to_have_text("2")  # Ann, Bob (Zoé has Ann's number)
    report = page.locator("#import-report")
    await expect(report).to_contain_text("pas de numéro")
    await expect(report).to_contain_text("No phone number in this row")
    await expect(report).to_contain_text("Same number as an earlier row of this file (row 2)")  # Zoé has Ann's
    # The lists table: no scrub or export for an uploader (gate.check, exports.create).
    await expect(page.locator("#lists")).to_contain_text("spring")
    await expect(page.locator("[data-scrub]")).to_have_count(0)
    await expect(page.locator("[data-export]")).to_have_count(0)

    # A file with no phone column: the preview says so and the import button stays off.
    await page.set_input_files("#upload-file", files=[{"name": "names.csv", "mimeType": "text/csv",
                                                       "buffer": b"name,city\nAnn,Paris\nBob,Lyon\n"}])
    await expect(page.locator("#preview-problem")).to_contain_text("No phone column")
    await expect(page.locator("#import-button")).to_be_disabled()
    # Map the column by hand: the preview follows.
    await page.locator('#preview-view select[data-column="0"]').select_option("phone")
    await page.click("#apply-mapping")
    await expect(page.locator("#preview-problem")).to_have_count(0)

    # A file the import refuses as a whole (most of its first 10,000 rows bad: the wrong file): its report names the
    # file-level failure (it used to be empty).
    bad = "phone\n" + "".join(f"not a number {i}\n" for i in range(10_001))
    await page.fill("#upload-list", "bad")
    await page.set_input_files("#upload-file", files=[{"name": "bad.csv", "mimeType": "text/csv",
                                                       "buffer": bad.encode()}])
    await expect(page.locator("#preview-view")).to_be_visible()
    await page.click("#import-button")
    await expect(page.locator("#import-status")).to_have_text("queued")
    work(gw.redis_url)
    await expect(page.locator("#import-status")).to_have_text("failed", timeout=10_000)
    await expect(report.locator("tbody tr").first).to_contain_text("whole file")
    await expect(report.locator("tbody tr").first).to_contain_text("too_many_bad_rows")

    # Pages it may not open say so; the API refuses too.
    await page.goto(url + "#/audit")
    await expect(page.locator("#view")).to_contain_text("cannot open this page")
    status = await page.evaluate("fetch('/v1/audit').then(r => r.status)")
    assert status == 403
    assert unexpected(errors) == []
    await context.close()


async def test_a_supervisor_looks_up_a_number_and_sees_why_it_is_denied(gw, browser):  # noqa: F811
    campaign = (await gw.create_campaign(caller_id="+33162000000", seller_name="Acme SAS", queue="sales"))["id"]
    await asyncio.to_thread(imported_list, gw.redis_url, "acme", "spring", CONSENTED, campaign=campaign)
    await loaded_registry(gw)
    # Bob (consent) was tried 4 times in the last days: the French cap (4 per 30 days) holds him back until a date.
    client = redis.Redis.from_url(gw.redis_url)
    facts = FactStore(client)
    now = datetime.now(UTC)
    for days in (1, 2, 3, 4):
        facts.record_attempt("acme", "+33145678902", Attempt(now - timedelta(days=days), campaign, "no_answer"))
    client.close()
    resp = await gw.client.post("/v1/gate/check", json={"campaign": campaign, "phone": "+33145678902"},
                                headers=gw.auth("acme", "supervisor"))
    assert resp.status == 200, await resp.text()
    resp = await gw.client.post("/v1/optouts", json={"phone": "+33145678901", "source": "crm"},
                                headers=gw.auth("acme", "supervisor"))
    assert resp.status == 201, await resp.text()

    context, page, errors, url = await signed_in(gw, browser, "acme", "supervisor-user")
    await page.goto(url + "#/compliance")
    await expect(page.locator('[data-registry-state="bloctel"]')).to_have_text("fresh")
    await expect(page.locator('[data-registry-state="us_dnc"]')).to_have_text("missing")
    await page.fill("#lookup-phone", "+33145678902")
    await page.select_option("#lookup-campaign", campaign)
    await page.click("#lookup-go")
    await expect(page.locator("#verdict")).to_have_text("Not allowed now")
    result = page.locator("#lookup-result")
    await expect(result.locator('[data-reason="FREQUENCY_CAP"]').first).to_contain_text(
        "too many attempts in the rolling window")
    await expect(page.locator("#next-allowed")).to_contain_text("(Europe/Paris)")
    await expect(result).to_contain_text("person's time zone: Europe/Paris")
    # The decision made by the check above, with its reason in words.
    await expect(page.locator("#decisions tbody tr")).to_have_count(1)
    await expect(page.locator("#decisions")).to_contain_text("too many attempts")
    await expect(page.locator("#consents")).to_contain_text("web form")

    # Ann asked not to be called: the opt-out, in words, and no time clears it.
    await page.fill("#lookup-phone", "0145678901")
    await page.fill("#lookup-country", "FR")
    await page.click("#lookup-go")
    await expect(page.locator("#looked-up")).to_have_text("+33145678901")
    await expect(result.locator('[data-reason="COMPANY_DNC"]').first).to_contain_text(
        "the person asked this company not to call")
    await expect(result.locator('[data-reason="NO_CONSENT"]').first).to_contain_text("no valid consent")
    await expect(page.locator("#next-allowed")).to_contain_text("only a change of facts")
    await expect(page.locator("#optouts")).to_contain_text("crm")

    # Record a consent with its evidence from the page; the lookup shows it.
    await page.fill("#consent-source", "paper form")
    await page.fill("#consent-evidence", "scan 2026-118")
    await page.click("#consent-save")
    await expect(page.locator("#consents")).to_contain_text("scan 2026-118")
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    assert "compliance.lookup" in actions and "grant" in actions  # consents are audited where written
    assert unexpected(errors) == []
    await context.close()


async def test_an_admin_invites_a_user_resets_their_mfa_and_manages_tokens(gw, browser):  # noqa: F811
    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user")
    await page.goto(url + "#/users")
    email = "zoe@acme.example"
    await page.fill("#invite-email", email)
    await page.select_option("#invite-role", "supervisor")
    await page.click("#invite-generate")
    password = await page.input_value("#invite-password")
    assert len(password) >= 12
    await page.click("#invite-send")
    await expect(page.locator("#invite-result")).to_contain_text(password)
    await expect(page.locator(f'[data-mfa-of="{email}"]')).to_have_text("no 2FA")

    # The invited user signs in with that password and sets up a second factor (API, as their browser would).
    accounts = AccountStore(gw.redis)
    assert await accounts.find(email) == ("acme", email)
    secret = await accounts.start_enrolment("acme", email)
    assert await accounts.confirm_enrolment("acme", email, pyotp.TOTP(secret).now(), time.time())
    user_cookie, _ = await SessionStore(gw.redis).create("acme", email, "full", time.time())
    await page.reload()
    await expect(page.locator(f'[data-mfa-of="{email}"]')).to_have_text("2FA on")
    await page.click(f'[data-reset-mfa="{email}"]')  # confirms (dialog accepted)
    await expect(page.locator("#users-status")).to_contain_text("second factor is removed (1 sessions ended)")
    await expect(page.locator(f'[data-mfa-of="{email}"]')).to_have_text("no 2FA")
    assert (await AuthStore(gw.redis).user("acme", email)).get("mfa") is None
    assert await SessionStore(gw.redis).get(user_cookie, time.time()) is None

    # Role change and disabling, then an API token shown once and revoked.
    await page.locator(f'[data-role-of="{email}"]').select_option("auditor")
    await expect(page.locator("#users-status")).to_contain_text("role is changed")
    assert (await AuthStore(gw.redis).user("acme", email))["role"] == "auditor"
    await page.click(f'[data-toggle="{email}"]')
    await expect(page.locator("#users-status")).to_contain_text("is disabled")
    await page.select_option("#token-user", "supervisor-user")
    await page.fill("#token-label", "crm sync")
    await page.click("#token-create")
    token = (await page.locator("#token-secret").text_content() or "").strip()
    assert token.startswith("dlr_")
    resp = await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    token_id = token.split("_")[1]
    await page.click(f'[data-revoke="{token_id}"]')
    await expect(page.locator("#users-status")).to_contain_text(f"Token {token_id} is revoked")
    resp = await gw.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    for action in ("user.create", "mfa.reset", "user.change", "token.create", "token.revoke"):
        assert action in actions, action
    assert unexpected(errors) == []
    await context.close()


async def test_an_auditor_of_one_tenant_never_sees_another_tenants_lists_audit_or_users(gw, browser):  # noqa: F811
    secret_import = await asyncio.to_thread(imported_list, gw.redis_url, "globex", "globex-secret")
    await AuthStore(gw.redis).create_user("globex", "boss@globex.example", "admin")
    resp = await gw.client.post("/v1/optouts", json={"phone": "+33145678901", "source": "globex-crm"},
                                headers=gw.auth("globex", "supervisor"))
    assert resp.status == 201
    await asyncio.to_thread(imported_list, gw.redis_url, "acme", "acme-list")

    context, page, errors, url = await signed_in(gw, browser, "acme", "auditor-user")
    for route, mark in (("lists", "acme-list"), ("audit", "auditor-user"), ("users", "auditor-user")):
        await page.goto(url + f"#/{route}")
        await expect(page.locator("#view")).to_contain_text(mark)
        text = await page.locator("#view").inner_text()
        assert "globex" not in text.lower(), route
    await page.goto(url + "#/compliance")
    await page.fill("#lookup-phone", "+33145678901")
    await page.click("#lookup-go")
    await expect(page.locator("#looked-up")).to_have_text("+33145678901")
    await expect(page.locator("#optouts")).to_contain_text("No opt-out")  # globex's opt-out is not acme's
    # The same session, asking the API for globex's things by name: not found, not forbidden (nothing to learn).
    for path in (f"/v1/imports/{secret_import}", f"/v1/imports/{secret_import}/report",
                 f"/v1/imports/{secret_import}/errors", "/v1/users/boss@globex.example",
                 "/v1/lists/globex-secret/scrub"):
        status = await page.evaluate(f"fetch('{path}').then(r => r.status)")
        assert status == 404, path
    listing = await page.evaluate("fetch('/v1/lists').then(r => r.json())")
    assert [i["id"] for i in listing["items"]] == ["acme-list"]
    trail = await page.evaluate("fetch('/v1/audit?limit=1000').then(r => r.json())")
    assert "globex" not in str(trail).lower()
    assert unexpected(errors) == []
    await context.close()


@pytest.mark.parametrize("width", [1440, 390])
async def test_pages_fit_the_screen(gw, browser, width, tmp_path):  # noqa: F811
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    campaign = (await gw.create_campaign(caller_id="+33162000000", seller_name="Acme SAS", queue="sales"))["id"]
    await asyncio.to_thread(imported_list, gw.redis_url, "acme", "spring", CONSENTED, campaign=campaign)
    await asyncio.to_thread(imported_list, gw.redis_url, "acme", "summer", MESSY)  # newest: its report has errors
    await loaded_registry(gw)
    await gw.client.post("/v1/gate/check", json={"campaign": campaign, "phone": "+33145678901"},
                         headers=gw.auth("acme", "supervisor"))
    await AuthStore(gw.redis).create_user("acme", "ada@acme.example", "supervisor")
    await AccountStore(gw.redis).set_password("acme", "ada@acme.example", "a long enough passphrase")

    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user", width)
    await page.goto(url + "#/lists")
    await page.fill("#upload-list", "autumn")
    # Dropped on the drop zone, as a person drags a file from their desktop.
    dropped = await page.evaluate_handle("""(text) => {
        const data = new DataTransfer();
        data.items.add(new File([text], "clients.csv", { type: "text/csv" }));
        return data;
    }""", MESSY)
    await page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    await expect(page.locator("#preview-view")).to_be_visible()
    await expect(page.locator("#drop-zone")).to_contain_text("clients.csv")
    await page.click('[data-report]')
    await expect(page.locator("#import-report tbody tr").first).to_be_visible()
    assert await fits(page), "lists"
    await page.screenshot(path=str(shots / f"lists-{width}.png"), full_page=True)

    await page.goto(url + "#/compliance")
    await expect(page.locator('[data-registry-state="bloctel"]')).to_be_visible()
    await page.fill("#lookup-phone", "+33145678901")
    await page.select_option("#lookup-campaign", campaign)
    await page.click("#lookup-go")
    await expect(page.locator("#verdict")).to_be_visible()
    assert await fits(page), "compliance"
    await page.screenshot(path=str(shots / f"compliance-{width}.png"), full_page=True)

    await page.goto(url + "#/audit")
    await page.click("#audit-verify")
    await expect(page.locator("#verify-verdict")).to_contain_text("intact")
    await expect(page.locator("#audit-rows tbody tr").first).to_be_visible()
    assert await fits(page), "audit"
    await page.screenshot(path=str(shots / f"audit-{width}.png"), full_page=True)

    await page.goto(url + "#/users")
    await expect(page.locator('[data-mfa-of="ada@acme.example"]')).to_be_visible()
    assert await fits(page), "users"
    await page.screenshot(path=str(shots / f"users-{width}.png"), full_page=True)
    assert unexpected(errors) == []
    await context.close()


async def test_an_admin_scrubs_and_exports_a_list_in_french(gw, browser):  # noqa: F811
    """The pages speak the user's language (preferences), reasons included; scrub and export download CSVs."""
    import json

    fr = json.loads((Path(__file__).parent.parent / "gateway" / "static" / "i18n" / "fr.json").read_text())
    campaign = (await gw.create_campaign(caller_id="+33162000000", seller_name="Acme SAS", queue="sales"))["id"]
    await asyncio.to_thread(imported_list, gw.redis_url, "acme", "spring", CONSENTED, campaign=campaign)
    resp = await gw.client.put("/v1/me/preferences", json={"language": "fr", "time_zone": "Europe/Paris"},
                               headers=gw.auth("acme", "admin"))
    assert resp.status == 200, await resp.text()

    context, page, errors, url = await signed_in(gw, browser, "acme", "admin-user")
    await page.goto(url + "#/lists")
    await expect(page.locator("#lists-page h2").first).to_have_text(fr["lists.upload_title"])
    await page.click('[data-scrub="spring"]')
    result = page.locator("#scrub-result")
    await expect(result).to_contain_text(fr["lists.scrub_never_why"])
    # Ann gave no consent: never callable (until that changes), the reason in French.
    await expect(result).to_contain_text(fr["reason.NO_CONSENT"])
    async with page.expect_download() as info:
        await page.click('[data-export="spring"]')
    download = await info.value
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    assert "+33145678902" in text and download.suggested_filename == "contacts-spring.csv"

    await page.goto(url + "#/compliance")
    await expect(page.locator('[data-registry-state="bloctel"]')).to_have_text(fr["comp.state.missing"])
    await page.fill("#lookup-phone", "+33145678901")
    await page.click("#lookup-go")
    await expect(page.locator("#verdict")).to_have_text(fr["comp.denied_now"])
    await expect(page.locator('#lookup-result [data-reason="NO_CONSENT"]').first).to_contain_text(
        fr["reason.NO_CONSENT"])
    actions = [e["action"] for e in await audit_events(gw, "acme")]
    assert "export.create" in actions
    assert unexpected(errors) == []
    await context.close()
