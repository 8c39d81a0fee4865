"""The dashboard in a real headless Chromium, on a REAL running campaign: `dialer demo` (Redis, workers, sandbox
PBX, gateway, engine) dials a sample list through the sandbox; a supervisor signs in, sees the campaign's figures
move because calls are being placed, pauses it, sees it paused, and the engine stops placing calls.

Nothing here writes figures: they come from the engine. Needs /usr/bin/chromium and playwright (see
tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.demo_support import demo_runner

CHROMIUM = os.environ.get("DIALER_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture
def demo():
    yield from demo_runner()


def placed(url: str, auth: dict[str, str]) -> int:
    """Calls the engine reserved at the gate (each placed call is one allowed `reserve` decision in the audit)."""
    page = requests.get(f"{url}v1/audit", params={"kind": "gate_decision", "limit": "1000"}, headers=auth,
                        timeout=10).json()
    return sum(1 for e in page["items"] if e["payload"]["mode"] == "reserve" and e["payload"]["allowed"])


def tile(card, name: str) -> int:
    return int(card.locator(f'[data-tile="{name}"]').inner_text() or 0)


def test_supervisor_watches_a_running_sandbox_campaign_and_pauses_it(demo, chromium_endpoint):
    # Slow calls (time scale 0.5) and many contacts: the campaign is still dialing when the browser looks.
    run = demo("--duration", "180", "--contacts", "200", "--time-scale", "0.5", "--agents", "4")
    url = run.wait_for(r"^Dashboard: (http://127\.0\.0\.1:\d+/)$")[1]
    token = run.wait_for(r"^Token: (dlr_[\w-]+)$")[1]
    campaign = run.wait_for(r"Campaign\s+(\S+)$")[1]
    auth = {"Authorization": f"Bearer {token}"}
    with sync_playwright() as pw:
        browser = pw.chromium.connect_over_cdp(chromium_endpoint)  # the test process's Chromium (conftest)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(url)
        page.click("#token-sign-in summary")
        page.fill("#token", token)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#who-text")).to_contain_text("demo-admin (admin)")
        card = page.locator(f'[data-campaign="{campaign}"]')
        expect(card.locator('[data-field="status"]')).to_have_text("running", timeout=10_000)

        # The numbers move: the engine dials, the sandbox answers, agents get busy.
        seen: dict[str, set[int]] = {"calls_per_minute": set(), "agents_busy": set(), "dialing": set()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(len(v) >= 2 for v in seen.values()):
            for name, values in seen.items():
                values.add(tile(card, name))
            page.wait_for_timeout(200)
        assert all(len(v) >= 2 for v in seen.values()), f"tiles did not move: {seen}"
        assert max(seen["calls_per_minute"]) > 0
        # The hourly chart has this hour's outcomes on top of the 24 hour slots.
        page.wait_for_function("n => document.querySelectorAll(n).length > 24",
                               arg=f'[data-campaign="{campaign}"] [data-field="chart"] svg rect', timeout=10_000)
        before = placed(url, auth)
        assert before > 0

        card.locator('[data-action="pause"]').click()
        expect(card.locator('[data-field="status"]')).to_have_text("paused", timeout=5000)
        expect(card.locator('[data-action="resume"]')).to_be_visible()
        # Calls in flight end (a few seconds at this time scale); then nothing new is placed.
        page.wait_for_timeout(3000)
        settled = placed(url, auth)
        page.wait_for_timeout(6000)
        assert placed(url, auth) == settled, "the engine kept placing calls after the pause"
        expect(card.locator('[data-tile="dialing"]')).to_have_text("0", timeout=10_000)
        expect(card.locator('[data-tile="ringing"]')).to_have_text("0", timeout=10_000)
        stats = requests.get(f"{url}v1/campaigns/{campaign}/stats", headers=auth, timeout=10).json()
        assert stats["status"] == "paused" and sum(stats["dispositions"].values()) > 0
        assert errors == []
        browser.close()
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(60) == 0
