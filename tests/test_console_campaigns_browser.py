"""The console's campaign pages in a real headless Chromium (Debian's), driven by Playwright, against a real
gateway on a real redis-server: the campaign list (finished campaigns included, filter, sort), the create form
(validation messages in words, a list that does not exist refused at once), the live page (agents and their states
as the engine publishes them, pacing reason in words, pause / stop, the page following the campaign to completed),
a French user reading French, and a viewer of one tenant never seeing another's campaigns, page or API.
Each page must fit 1440 px and 390 px without sideways scrolling; screenshots go to $DIALER_SCREENSHOTS (the
committed ones in docs/console/ were made with DIALER_SCREENSHOTS=docs/console).

The figures and agent states here are written to Redis with the engine's own writers (dialer/livestats.py,
dialer/runtime/agentstates.py), as tests/test_dashboard_browser.py does; tests/test_console_campaigns_journey.py
runs the same pages on a real engine dialling through the sandbox PBX.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib
from playwright.async_api import expect

from dialer import livestats
from dialer.campaigns import CampaignStore, campaign_key
from dialer.runtime.agents import Member
from dialer.runtime.agentstates import AgentStates, queue_board
from gateway.accounts import AccountStore
from tests.test_dashboard_browser import CHROMIUM, browser, gw  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

PASSWORD = "a long enough passphrase"
EN = json.loads((Path(__file__).parent.parent / "gateway" / "static" / "i18n" / "en.json").read_text())
FR = json.loads((Path(__file__).parent.parent / "gateway" / "static" / "i18n" / "fr.json").read_text())
OVERFLOW = "document.scrollingElement.scrollWidth > window.innerWidth"
# Resolves once the browser has drawn twice: the layout of what was just added is done (an event, not a delay).
NEXT_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def shots_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


async def password_user(gw, tenant: str, email: str, role: str, language: str | None = None) -> None:  # noqa: F811
    """A console user with a password (no second factor: not an admin, tenant policy off)."""
    resp = await gw.client.post("/v1/users", json={"name": email, "role": role}, headers=gw.auth(tenant, "admin"))
    assert resp.status == 201, await resp.text()
    await AccountStore(gw.redis).set_password(tenant, email, PASSWORD)
    if language:
        await gw.redis.hset(f"t:{{{tenant}}}:user:{email}", "language", language)


async def sign_in(page, gw, email: str) -> None:  # noqa: F811
    await page.goto(str(gw.client.make_url("/")))
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#who-text")).to_contain_text(email)


def watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())
    return errors


def unexpected(errors: list[str]) -> list[str]:
    # A refused request (a 4xx the page shows in words) is logged by the browser as a failed load; script errors
    # and CSP violations are defects.
    return [e for e in errors if "the server responded with a status of 4" not in e]


async def publish_agents(redis_url: str, queue: str, states: dict[str, tuple], calls: dict[str, str],
                         tracker: AgentStates, wall: float) -> None:
    """What the engine publishes after a poll: name -> (paused, in_call, device status[, seconds since its call
    ended]), as the agent board (dialer/runtime/agents.py) holds them."""
    members = [(f"pbx-a|Local/{name}", Member(name, paused=v[0], in_call=v[1], status=v[2], interface=f"Local/{name}",
                                              ended_at=wall - v[3] if len(v) > 3 else None))
               for name, v in states.items()]
    rows = tracker.observe(queue, members, {f"pbx-a|Local/{k}": v for k, v in calls.items()}, now=wall, wall=wall,
                           wrapup=5.0)
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    pipe = client.pipeline(transaction=True)
    queue_board(pipe, queue, rows, waiting=2)
    pipe.execute()
    client.close()


async def engine_writes(gateway, tenant: str, campaign: str, **gauges) -> None:
    pipe = gateway.redis.pipeline(transaction=True)
    now = datetime.now(UTC)
    livestats.queue_gauges(pipe, tenant, campaign, gauges, now)
    livestats.queue_pacing(pipe, tenant, campaign, "no-agents", "", "")
    livestats.queue_attempt(pipe, tenant, campaign, now)
    livestats.queue_disposition(pipe, tenant, campaign, "answered", now)
    livestats.queue_denial(pipe, tenant, campaign, "NATIONAL_REGISTRY")
    await pipe.execute()


async def test_create_watch_pause_stop_and_find_it_finished(gw, browser, tmp_path):  # noqa: F811
    shots = shots_dir(tmp_path)
    await gw.ensure_list("acme", "l1")
    await password_user(gw, "acme", "sam@acme.example", "supervisor")
    old = await gw.ready_campaign()  # a campaign that already ran and finished
    for action in ("start", "stop"):
        assert (await gw.client.post(f"/v1/campaigns/{old['id']}/{action}", headers=gw.auth("acme", "supervisor"))
                ).status == 200
    await gw.redis.hset(campaign_key("acme", old["id"]), "status", "completed")

    page = await (await browser.new_context(viewport={"width": 1440, "height": 1000})).new_page()
    errors = watch_errors(page)
    await sign_in(page, gw, "sam@acme.example")
    await page.click("#nav a[data-route='campaigns']")
    await expect(page.locator(f'#campaign-table tr[data-campaign="{old["id"]}"]')).to_be_visible()

    # The form: mistakes are explained in words, in the field they concern.
    await page.click("#new-campaign")
    await expect(page.locator("#campaign-form")).to_be_visible()
    await page.fill("#f-name", "Autumn offer")
    await page.fill("#f-caller_id", "01 62 00 00 00")
    await page.fill("#f-queue", "sales team")
    await page.click("#save-campaign")
    await expect(page.locator("#e-caller_id")).to_contain_text("international form")
    await expect(page.locator("#e-queue")).to_contain_text("no spaces")
    await expect(page.locator("#e-lists")).to_contain_text("at least one list")
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaign-form-errors-1440.png"), full_page=True)
    await page.fill("#f-caller_id", "+33162000000")
    await page.fill("#f-seller_name", "Acme SAS")
    await page.fill("#f-queue", "sales")
    await page.check('input[name="lists"][value="l1"]')
    await page.select_option("#f-pacing_mode", "power")
    await page.fill("#f-pacing_ratio", "1.5")
    await page.fill("#f-retry-busy", "10")
    await page.fill("#f-time_zone", "Europe/Paris")
    await page.click("#save-campaign")
    await expect(page.locator(".campaign-live h2")).to_have_text("Autumn offer")
    cid = page.url.rsplit("/", 1)[1]
    stored = await (await gw.client.get(f"/v1/campaigns/{cid}", headers=gw.auth("acme", "supervisor"))).json()
    assert stored["pacing_mode"] == "power" and stored["pacing_ratio"] == 1.5 and stored["lists"] == ["l1"]
    assert stored["retry_rules"] == {"busy": 10} and stored["time_zone"] == "Europe/Paris"

    live = page.locator(f'.campaign-live[data-campaign="{cid}"]')
    await expect(live.locator('[data-field="status"]')).to_have_text("draft")
    await live.locator('[data-action="start"]').click()
    await expect(live.locator('[data-field="status"]')).to_have_text("running")

    # The engine's figures and agents arrive; the agents change state and the page follows.
    await engine_writes(gw, "acme", cid, dialing=2, ringing=1, queue_staffed=3, calls_per_minute=4)
    tracker = AgentStates()
    wall = time.time()
    await publish_agents(gw.redis_url, "sales", {"alice": (False, True, "2"), "bob": (False, False, "1"),
                                                 "carol": (True, False, "1")}, {"alice": f"acme/{cid}"}, tracker, wall)
    await expect(live.locator('#agents-table tr[data-agent="alice"] [data-field="state"]')).to_have_text("on call")
    await expect(live.locator('#agents-table tr[data-agent="alice"]')).to_contain_text("Autumn offer")
    await expect(live.locator('#agents-table tr[data-agent="bob"] [data-field="state"]')).to_have_text("free")
    await expect(live.locator('#agents-table tr[data-agent="carol"] [data-field="state"]')).to_have_text("paused")
    await expect(live.locator('[data-tile="waiting"]')).to_have_text("2")
    await expect(live.locator('[data-tile="dialing"]')).to_have_text("2")
    await expect(live.locator('[data-field="pacing-reason"]')).to_contain_text("no agent is logged in")
    await expect(live.locator('[data-reason="NATIONAL_REGISTRY"]')).to_contain_text("national do-not-call registry")
    await expect(live.locator('[data-reason="answered"]')).to_contain_text("answered by a person")
    await publish_agents(gw.redis_url, "sales", {"alice": (False, False, "1", 1.0), "bob": (False, True, "2")}, {},
                         tracker, wall + 3)
    await expect(live.locator('#agents-table tr[data-agent="alice"] [data-field="state"]')).to_have_text("wrap-up")
    await expect(live.locator('#agents-table tr[data-agent="bob"] [data-field="state"]')).to_have_text("on call")
    await expect(live.locator('#agents-table tr[data-agent="carol"] [data-field="state"]')).to_have_text("logged off")
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaign-live-1440.png"), full_page=True)

    await live.locator('[data-action="pause"]').click()
    await expect(live.locator('[data-field="status"]')).to_have_text("paused")
    assert await gw.redis.hget(campaign_key("acme", cid), "status") == "paused"
    await live.locator('[data-action="stop"]').click()
    await expect(live.locator('[data-field="status"]')).to_have_text("stopping")
    # The engine completes it (its own move): the open page follows without a reload.
    sync = redis_lib.Redis.from_url(gw.redis_url, decode_responses=True)
    CampaignStore(sync).control("acme", cid, "complete", by="engine", at=datetime.now(UTC))
    sync.close()
    await expect(live.locator('[data-field="status"]')).to_have_text("completed", timeout=5000)
    await expect(live.locator('[data-field="notice"]')).to_contain_text("nothing more will be dialled")
    await expect(live.locator("[data-action]:visible")).to_have_count(1)  # archive only

    await page.click("#nav a[data-route='campaigns']")
    await page.select_option("#campaign-filter", "finished")
    rows = page.locator("#campaign-table tbody tr[data-campaign]")
    await expect(rows).to_have_count(2)
    await expect(page.locator(f'#campaign-table tr[data-campaign="{cid}"] [data-field="status"]')).to_have_text(
        "completed")
    await page.select_option("#campaign-sort", "name")
    await expect(rows.first).to_have_attribute("data-campaign", cid)  # Autumn before Spring
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaigns-1440.png"), full_page=True)
    assert unexpected(errors) == []


async def test_a_list_that_does_not_exist_is_refused_at_once(gw, browser):  # noqa: F811
    await gw.ensure_list("acme", "l1")
    await password_user(gw, "acme", "sam@acme.example", "supervisor")
    made = await gw.ready_campaign()
    await gw.redis.srem("t:{acme}:lists", "l1")  # the list went away after the campaign named it
    page = await browser.new_page()
    errors = watch_errors(page)
    await sign_in(page, gw, "sam@acme.example")
    await page.goto(str(gw.client.make_url("/")) + f"#/campaigns/{made['id']}/edit")
    await page.fill("#f-name", "Spring offer, renamed")
    await page.click("#save-campaign")
    await expect(page.locator("#e-lists")).to_have_text(
        "The list l1 does not exist in your company's lists: import it first.")
    assert (await gw.client.get(f"/v1/campaigns/{made['id']}", headers=gw.auth())).status == 200
    assert (await (await gw.client.get(f"/v1/campaigns/{made['id']}", headers=gw.auth())).json())["name"] == \
        "Spring offer"  # nothing written
    assert unexpected(errors) == []


async def test_a_french_user_reads_french(gw, browser, tmp_path):  # noqa: F811
    shots = shots_dir(tmp_path)
    await password_user(gw, "acme", "zoe@acme.example", "supervisor", language="fr")
    made = await gw.ready_campaign()
    await gw.client.post(f"/v1/campaigns/{made['id']}/start", headers=gw.auth("acme", "supervisor"))
    await engine_writes(gw, "acme", made["id"], dialing=1)
    page = await (await browser.new_context(viewport={"width": 390, "height": 900}, locale="en-US")).new_page()
    errors = watch_errors(page)
    await sign_in(page, gw, "zoe@acme.example")
    await expect(page.locator("#nav a[data-route='campaigns']")).to_have_text("Campagnes")
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await page.click("#nav a[data-route='campaigns']")
    row = page.locator(f'#campaign-table tr[data-campaign="{made["id"]}"]')
    await expect(row.locator('[data-field="status"]')).to_have_text("en cours")
    await expect(row).to_contain_text("liste nationale d'opposition")  # the top denial's reason, in French
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaigns-fr-390.png"), full_page=True)
    await row.locator("a.name").click()
    live = page.locator(".campaign-live")
    await expect(live.locator('[data-reason="NATIONAL_REGISTRY"]')).to_contain_text(
        "inscrit sur la liste nationale d'opposition")
    await expect(live.locator('[data-field="pacing-reason"]')).to_contain_text("aucun agent connecté")
    await expect(live).to_contain_text("Aujourd'hui")
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaign-live-fr-390.png"), full_page=True)
    # The live board: its static labels (index.html's card template) and its live lines, all in French.
    await page.click("#nav a[data-route='live']")
    board = page.locator(f'#campaigns [data-campaign="{made["id"]}"]')
    await expect(board.locator('[data-tile="dialing"]')).to_have_text("1")  # the stream's first figures are in
    await expect(board.locator('[data-i18n="board.tile.dialing"]')).to_have_text("Numérotation")
    await expect(board.locator('[data-i18n="board.abandon"]')).to_have_text("Taux d'abandon et plafond")
    await expect(board.locator('[data-field="status"]')).to_have_text("en cours")
    await expect(board.locator('[data-action="pause"]')).to_have_text("Mettre en pause")
    await expect(board.locator('[data-field="pacing"]')).to_have_text("Cadence : aucun agent connecté : aucun appel")
    await expect(board.locator('[data-reason="NATIONAL_REGISTRY"]')).to_contain_text("liste nationale d'opposition")
    await expect(page.locator("#live")).to_have_text("en direct")
    shown = await page.evaluate("""() => [...document.querySelectorAll('#board [data-i18n]')]
        .filter((el) => el.offsetParent !== null).map((el) => [el.dataset.i18n, el.textContent])""")
    assert len(shown) > 20 and [key for key, text in shown if text == EN[key] != FR[key]] == []
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "live-board-fr-390.png"), full_page=True)
    # Choosing English on the preferences page keeps it with the account.
    await page.click("#nav a[data-route='preferences']")
    await page.select_option("#pref-language", "en")
    await page.select_option("#pref-zone", "America/New_York")
    await page.click("#prefs-form button[type=submit]")
    await expect(page.locator("#nav a[data-route='campaigns']")).to_have_text("Campaigns")
    assert await gw.redis.hget("t:{acme}:user:zoe@acme.example", "language") == "en"
    assert await gw.redis.hget("t:{acme}:user:zoe@acme.example", "time_zone") == "America/New_York"
    assert unexpected(errors) == []


async def test_calling_windows_are_set_in_the_form_and_errors_read_in_french(gw, browser, tmp_path):  # noqa: F811
    """The schedule as the API models it (starts_at, schedule_windows) from the form, checked in words in the
    user's language first; then the API's own refusal (a campaign that cannot start), worded from its code."""
    shots = shots_dir(tmp_path)
    await gw.ensure_list("acme", "l1")
    await password_user(gw, "acme", "zoe@acme.example", "supervisor", language="fr")
    page = await (await browser.new_context(viewport={"width": 390, "height": 900}, locale="fr-FR")).new_page()
    errors = watch_errors(page)
    await page.goto(str(gw.client.make_url("/")))
    await expect(page.locator('#sign-in [data-i18n="signin.title"]')).to_have_text("Connexion")  # before signing in
    await expect(page.locator('label[for="password"]')).to_have_text("Mot de passe")
    await page.fill("#email", "zoe@acme.example")
    await page.fill("#password", "not the password")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_have_text("Adresse e-mail ou mot de passe erroné.")  # the API's
    await sign_in(page, gw, "zoe@acme.example")

    await page.goto(str(gw.client.make_url("/")) + "#/campaigns/new")
    await page.fill("#f-name", "Relance hiver")
    await page.check('input[name="lists"][value="l1"]')
    await page.fill("#f-queue", "sales")
    await page.fill("#f-time_zone", "Europe/Paris")
    await page.click("#add-window")
    first = page.locator("[data-window]").nth(0)
    await first.locator('input[name="window-start"]').fill("18:00")
    await first.locator('input[name="window-end"]').fill("09:00")
    await page.click("#add-window")
    second = page.locator("[data-window]").nth(1)
    for day in ("mon", "tue", "wed", "thu", "fri"):
        await second.locator(f'input[name="window-day"][value="{day}"]').uncheck()
    await second.locator('input[name="window-start"]').fill("10:00")
    await second.locator('input[name="window-end"]').fill("12:00")
    await page.fill("#f-starts_at", "2031-01-06T09:30")
    await page.click("#save-campaign")
    await expect(first.locator(".window-error")).to_have_text(
        "La fin doit être après le début (une plage ne peut pas passer minuit).")
    await expect(second.locator(".window-error")).to_have_text("Choisissez au moins un jour pour cette plage.")
    await expect(page.locator("#form-error")).to_have_text("Corrigez les champs signalés en rouge.")
    assert not await page.evaluate(OVERFLOW)
    await page.screenshot(path=str(shots / "campaign-form-windows-fr-390.png"), full_page=True)
    await first.locator('input[name="window-start"]').fill("09:00")
    await first.locator('input[name="window-end"]').fill("12:30")
    await second.locator('input[name="window-day"][value="sat"]').check()
    await page.click("#save-campaign")
    await expect(page.locator(".campaign-live h2")).to_have_text("Relance hiver")
    cid = page.url.rsplit("/", 1)[1]
    stored = await (await gw.client.get(f"/v1/campaigns/{cid}", headers=gw.auth("acme", "supervisor"))).json()
    assert stored["schedule_windows"] == [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00",
                                           "end": "12:30"}, {"days": ["sat"], "start": "10:00", "end": "12:00"}]
    assert stored["starts_at"] == "2031-01-06T08:30:00Z"  # 09:30 in Paris, winter time

    # The API refuses to start it (no caller ID): its code and rule, worded in French.
    live = page.locator(f'.campaign-live[data-campaign="{cid}"]')
    await live.locator('[data-action="start"]').click()
    await expect(live.locator('[data-field="error"]')).to_have_text(
        "Numéro présenté : Une campagne a besoin d'un numéro présenté pour démarrer.")

    # Editing shows the windows as saved; removing one and saving keeps the other.
    await page.goto(str(gw.client.make_url("/")) + f"#/campaigns/{cid}/edit")
    await expect(page.locator("[data-window]")).to_have_count(2)
    await expect(page.locator('[data-window] input[name="window-end"]').first).to_have_value("12:30")
    await expect(page.locator("#f-starts_at")).to_have_value("2031-01-06T09:30")
    await page.locator("[data-window]").nth(1).locator(".remove-window").click()
    await page.fill("#f-starts_at", "")
    await page.click("#save-campaign")
    await expect(page.locator(".campaign-live h2")).to_have_text("Relance hiver")
    stored = await (await gw.client.get(f"/v1/campaigns/{cid}", headers=gw.auth("acme", "supervisor"))).json()
    assert stored["schedule_windows"] == [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00",
                                           "end": "12:30"}]
    assert "starts_at" not in stored or stored["starts_at"] is None
    assert unexpected(errors) == []


async def test_a_viewer_of_one_tenant_never_sees_another(gw, browser):  # noqa: F811
    mine = (await gw.ready_campaign())["id"]
    theirs = (await gw.ready_campaign("globex"))["id"]
    for tenant, cid in (("acme", mine), ("globex", theirs)):
        await gw.client.post(f"/v1/campaigns/{cid}/start", headers=gw.auth(tenant, "supervisor"))
    await password_user(gw, "acme", "viv@acme.example", "auditor")
    # The API: not listed, not readable, no stream, no agents.
    listed = await (await gw.client.get("/v1/campaigns?progress=true", headers=gw.auth("acme", "auditor"))).json()
    assert [c["id"] for c in listed["items"]] == [mine]
    for path in (f"/v1/campaigns/{theirs}", f"/v1/campaigns/{theirs}/stats", f"/v1/campaigns/{theirs}/agents",
                 f"/v1/campaigns/{theirs}/events"):
        assert (await gw.client.get(path, headers=gw.auth("acme", "auditor"))).status == 404, path
    # An agent of a shared queue on globex's call: acme sees the agent but not globex's campaign.
    await publish_agents(gw.redis_url, "sales", {"dave": (False, True, "2")}, {"dave": f"globex/{theirs}"},
                         AgentStates(), time.time())
    agents = await (await gw.client.get(f"/v1/campaigns/{mine}/agents", headers=gw.auth("acme", "auditor"))).json()
    assert agents["agents"][0]["call"] == {"other_tenant": True}
    # The pages.
    page = await browser.new_page()
    errors = watch_errors(page)
    await sign_in(page, gw, "viv@acme.example")
    await page.click("#nav a[data-route='campaigns']")
    await expect(page.locator(f'#campaign-table tr[data-campaign="{mine}"]')).to_be_visible()
    await expect(page.locator(f'#campaign-table tr[data-campaign="{theirs}"]')).to_have_count(0)
    await expect(page.locator("#new-campaign")).to_have_count(0)  # an auditor creates nothing
    await page.goto(str(gw.client.make_url("/")) + f"#/campaigns/{mine}")
    await expect(page.locator('#agents-table tr[data-agent="dave"]')).to_contain_text("another company's campaign")
    await expect(page.locator(".campaign-live [data-action]:visible")).to_have_count(0)
    await page.goto(str(gw.client.make_url("/")) + f"#/campaigns/{theirs}")
    await expect(page.locator("#view [role=alert]")).to_contain_text("Not found")
    assert theirs not in (await page.content()).replace(f"#/campaigns/{theirs}", "")
    assert unexpected(errors) == []


@pytest.mark.parametrize("width", [1440, 390])
async def test_every_campaign_page_fits_the_screen(gw, browser, width, tmp_path):  # noqa: F811
    shots = shots_dir(tmp_path)
    await password_user(gw, "acme", "sam@acme.example", "supervisor")
    made = await gw.ready_campaign()
    # one of two dialer campaigns of one legal campaign (docs/pacing.md): the live page says which window is capped
    resp = await gw.client.patch(f"/v1/campaigns/{made['id']}", json={"legal_campaign": "spring-offer"},
                                 headers=gw.auth("acme", "supervisor"))
    assert resp.status == 200, await resp.text()
    await gw.client.post(f"/v1/campaigns/{made['id']}/start", headers=gw.auth("acme", "supervisor"))
    await engine_writes(gw, "acme", made["id"], dialing=3, ringing=2, queue_staffed=2, abandon_rate_24h=0.025,
                        legal_members=2, legal_abandon_rate_24h=0.0125, legal_abandon_rate_30d=0.02)
    await publish_agents(gw.redis_url, "sales", {"alice": (False, True, "2"), "bob-with-a-long-name": (
        False, False, "1")}, {"alice": f"acme/{made['id']}"}, AgentStates(), time.time() - 75)
    page = await (await browser.new_context(viewport={"width": width, "height": 900})).new_page()
    errors = watch_errors(page)
    await sign_in(page, gw, "sam@acme.example")
    base = str(gw.client.make_url("/"))
    for route, name, ready in (("campaigns", "campaigns", "#campaign-table"),
                               (f"campaigns/{made['id']}", "campaign-live", "#agents-table"),
                               ("campaigns/new", "campaign-form", "#campaign-form"),
                               (f"campaigns/{made['id']}/edit", "campaign-edit", "#view [role=alert]"),
                               ("preferences", "preferences", "#prefs-form"),
                               ("live", "live-board", f'[data-campaign="{made["id"]}"]')):
        await page.goto(f"{base}#/{route}")
        await expect(page.locator(ready).first).to_be_visible()
        if name == "campaign-live":
            await expect(page.locator('[data-field="abandon-legal"]')).to_have_text(
                "Legal campaign spring-offer: 2 campaigns share this abandon window; all together 1.25% over 24 h, "
                "2.00% over 30 days (the cap applies to this figure).")
        await page.evaluate(NEXT_FRAMES)  # what the ready element brought is laid out
        assert not await page.evaluate(OVERFLOW), f"{route} scrolls sideways at {width} px"
        await page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    assert unexpected(errors) == []
