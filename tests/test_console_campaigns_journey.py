"""The campaign pages on a REAL running stack: `dialer demo` (Redis, workers, sandbox PBX, gateway, engine). A
supervisor signs in with a password in Debian's Chromium, creates a campaign with the form, starts it, watches the
sandbox's agents change state as the engine dials through the PBX, pauses it, stops it, sees the open page follow
it to `completed`, and finds it under the finished campaigns. Nothing here writes figures or agent states: they
come from the engine. Needs /usr/bin/chromium and playwright (see tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from dialer.demo import DEMO_CALLER_ID, LIST_ID, QUEUE
from tests.demo_support import demo_runner
from tests.test_dashboard_demo_browser import CHROMIUM

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")

EMAIL = "sup@demo.example"
PASSWORD = "a long enough passphrase"
OVERFLOW = "document.scrollingElement.scrollWidth > window.innerWidth"
NEXT_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


@pytest.fixture
def demo():
    yield from demo_runner()


def test_create_start_watch_agents_pause_stop_and_find_it_finished(demo, tmp_path, chromium_endpoint):
    shots = Path(os.environ.get("DIALER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    run = demo("--duration", "300", "--contacts", "150", "--time-scale", "0.5", "--agents", "3")
    url = run.wait_for(r"^Dashboard: (http://127\.0\.0\.1:\d+/)$")[1]
    token = run.wait_for(r"^Token: (dlr_[\w-]+)$")[1]
    demo_campaign = run.wait_for(r"Campaign\s+(\S+)$")[1]
    admin = {"Authorization": f"Bearer {token}"}
    # The demo's own campaign gives way (and becomes a finished campaign); a supervisor with a password.
    assert requests.post(f"{url}v1/campaigns/{demo_campaign}/stop", headers=admin, timeout=10).status_code == 200
    assert requests.post(f"{url}v1/users", json={"name": EMAIL, "role": "supervisor"}, headers=admin,
                         timeout=10).status_code == 201
    assert requests.put(f"{url}v1/users/{EMAIL}/password", json={"password": PASSWORD}, headers=admin,
                        timeout=10).status_code == 200
    with sync_playwright() as pw:
        browser = pw.chromium.connect_over_cdp(chromium_endpoint)  # the test process's Chromium (conftest)
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(url)
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#who-text")).to_contain_text(f"{EMAIL} (supervisor)")

        page.click("#nav a[data-route='campaigns']")
        page.click("#new-campaign")
        page.fill("#f-name", "Journey: spring call-back")
        page.fill("#f-seller_name", "Demo Energie SAS")
        page.fill("#f-caller_id", DEMO_CALLER_ID)
        page.check(f'input[name="lists"][value="{LIST_ID}"]')
        page.fill("#f-queue", QUEUE)
        page.fill("#f-retry-no_answer", "1")
        page.click("#save-campaign")
        live = page.locator(".campaign-live")
        expect(live.locator("h2")).to_have_text("Journey: spring call-back")
        campaign = page.url.rsplit("/", 1)[1]
        live.locator('[data-action="start"]').click()
        expect(live.locator('[data-field="status"]')).to_have_text("running")

        # The sandbox's agents, as the engine sees them: each takes calls, so states change under our eyes.
        seen: dict[str, set[str]] = {}
        ours = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (ours and sum(len(v) for v in seen.values()) >= 4):
            for row in live.locator("#agents-table tbody tr").all():
                name, state = row.get_attribute("data-agent"), row.get_attribute("data-state")
                seen.setdefault(name or "", set()).add(state or "")
                if state == "on_call" and "Journey: spring call-back" in row.inner_text():
                    ours = True  # the agent's current call is named: one of this campaign's calls
            page.wait_for_timeout(200)
        assert len(seen) == 3, seen
        assert any(len(states) >= 2 for states in seen.values()), f"no agent changed state: {seen}"
        assert ours, f"no agent was seen on one of this campaign's calls: {seen}"
        assert int(live.locator('[data-tile="today_attempts"]').inner_text().replace("\u202f", "")) > 0
        assert not page.evaluate(OVERFLOW)
        page.screenshot(path=str(shots / "journey-campaign-live-1440.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 900})
        page.evaluate(NEXT_FRAMES)  # laid out again at the new width
        assert not page.evaluate(OVERFLOW)
        page.screenshot(path=str(shots / "journey-campaign-live-390.png"), full_page=True)
        page.set_viewport_size({"width": 1440, "height": 1000})

        live.locator('[data-action="pause"]').click()
        expect(live.locator('[data-field="status"]')).to_have_text("paused")
        live.locator('[data-action="stop"]').click()
        # Calls in flight end, then the engine completes the campaign: the open page follows, no reload.
        expect(live.locator('[data-field="status"]')).to_have_text("completed", timeout=60_000)
        expect(live.locator('[data-field="notice"]')).to_contain_text("nothing more will be dialled")

        page.click("#nav a[data-route='campaigns']")
        page.select_option("#campaign-filter", "finished")
        row = page.locator(f'#campaign-table tr[data-campaign="{campaign}"]')
        expect(row.locator('[data-field="status"]')).to_have_text("completed")
        expect(page.locator(f'#campaign-table tr[data-campaign="{demo_campaign}"]')).to_be_visible()
        answers = int(row.locator('[data-field="answers"]').inner_text().replace("\u202f", "") or 0)
        listed = requests.get(f"{url}v1/campaigns", params={"progress": "true"}, headers=admin, timeout=10).json()
        progress = {c["id"]: c["progress"] for c in listed["items"]}[campaign]
        assert answers == progress["answered"] and progress["done"] + progress["never_callable"] > 0
        page.screenshot(path=str(shots / "journey-campaigns-finished-1440.png"), full_page=True)
        assert errors == []
        browser.close()
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(60) == 0
