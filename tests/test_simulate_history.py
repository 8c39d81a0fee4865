"""`dialer simulate --from-history`: the scenario of a campaign's recorded day, read from a real Redis where
the runtime writes it (hourly counters, saved pacing estimates, live gauges)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from dialer.cli import main
from dialer.livestats import queue_attempt, queue_disposition, queue_gauges
from dialer.pacing import CampaignEstimators
from dialer.runtime.engine import estimates_key
from dialer.sim_history import HistoryError, scenario_from_history
from dialer.simulate import simulate_scenario

NOW = datetime.now(UTC)
DAY = (NOW - timedelta(days=1)).replace(minute=10, second=0, microsecond=0)


def _record(client: redis.Redis, hour: int, outcomes: dict[str, int], tenant: str = "t1", campaign: str = "c1") -> None:
    at = DAY.replace(hour=hour)
    pipe = client.pipeline(transaction=False)
    for disposition, count in outcomes.items():
        for _ in range(count):
            queue_attempt(pipe, tenant, campaign, at)
            queue_disposition(pipe, tenant, campaign, disposition, at)
    pipe.execute()


def _estimates(client: redis.Redis, calls: int) -> None:
    est = CampaignEstimators()
    for k in range(calls):
        est.on_live_answer(float(k), 7.0 + (k % 5))
        est.on_agent_free(200.0 + (k % 11))  # handle times about 205 s, far from the 120 s prior
    client.set(estimates_key("t1", "c1"), json.dumps(est.export()))


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    return redis_url


def test_history_gives_each_hour_its_answer_rate(redis_client: redis.Redis) -> None:
    _record(redis_client, 9, {"answered": 110, "abandoned": 2, "opted_out": 8, "machine": 120, "busy": 20,
                              "no_answer": 140})
    _record(redis_client, 10, {"answered": 40, "machine": 160, "busy": 20, "congestion": 10, "no_answer": 170})
    _record(redis_client, 11, {"answered": 1, "no_answer": 4})  # 5 attempts: too few to trust alone
    _estimates(redis_client, 400)
    s = scenario_from_history(redis_client, "t1", "c1", days=3, agents=6)
    assert [p.name for p in s.phases] == ["09:00 UTC", "10:00 UTC", "11:00 UTC"] and s.duration == 3 * 3600
    nine, ten, eleven = (s.world_at(h * 3600.0 + 60) for h in range(3))
    assert nine.answer_rate == pytest.approx(0.30, abs=0.02)  # 120 live of 400
    assert ten.answer_rate == pytest.approx(0.10, abs=0.02)
    assert 0.1 < eleven.answer_rate < 0.3  # 1 of 5, shrunk towards the campaign's 20%
    assert nine.machine_rate == pytest.approx(0.30, abs=0.02) and ten.failed == pytest.approx(0.025, abs=0.01)
    assert nine.agents == 6
    assert 195 < nine.talk.mean < 215 and nine.wrapup.mean == 0  # the recorded handle time, not the defaults
    assert 7 < nine.ring_live.mean < 12
    assert any("805 settled attempts" in n for n in s.notes)
    r = simulate_scenario(s)
    assert r.calls_placed > 0 and len(r.phases()) == 3


def test_short_or_missing_history(redis_client: redis.Redis) -> None:
    with pytest.raises(HistoryError, match="no recorded call outcome"):
        scenario_from_history(redis_client, "t1", "c1", days=2, agents=5)
    _record(redis_client, 14, {"answered": 3, "no_answer": 7})
    with pytest.raises(HistoryError, match="--agents"):
        scenario_from_history(redis_client, "t1", "c1", days=2)
    s = scenario_from_history(redis_client, "t1", "c1", days=2, agents=5)
    notes = " ".join(s.notes)
    assert "short history" in notes and "from the defaults table" in notes
    # 3 of 10 blended with 50 pseudo-attempts at the default 15%: between the two.
    assert 0.15 < s.world_at(0).answer_rate < 0.30
    queue_gauges_pipe = redis_client.pipeline()
    queue_gauges(queue_gauges_pipe, "t1", "c1", {"agents_free": 2, "agents_busy": 5}, NOW)
    queue_gauges_pipe.execute()
    assert scenario_from_history(redis_client, "t1", "c1", days=2).world_at(0).agents == 7


def test_cli_from_history_with_what_ifs(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = redis.Redis.from_url(env)
    _record(client, 9, {"answered": 60, "machine": 150, "busy": 10, "no_answer": 180})
    argv = ["simulate", "--from-history", "--tenant", "t1", "--campaign", "c1", "--days", "2"]
    assert main([*argv, "--agents", "4"]) == 0
    out = capsys.readouterr().out
    assert "note: history: 400 settled attempts" in out and "09:00 UTC" in out
    assert main([*argv, "--agents", "8", "--mode", "power", "--ratio", "2.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "power" and data["phases"][0]["name"] == "09:00 UTC"
    assert main(["simulate", "--from-history", "--tenant", "t1"]) == 1
    assert "--from-history needs --tenant and --campaign" in capsys.readouterr().err
    assert main([*argv[:2], "--tenant", "t1", "--campaign", "nothing", "--agents", "3"]) == 1
    assert "no recorded call outcome" in capsys.readouterr().err
    client.close()
