"""The discrete-event simulator: deterministic, honest accounting, predictive under the cap."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from dialer.cli import main
from dialer.commands.simulate import parse_duration
from dialer.pacing import PacingMode
from dialer.simulate import SimConfig, simulate

SMALL = SimConfig(agents=10, answer_rate=0.15, talk_mean=90.0, duration=3600.0, seed=1)


def test_same_seed_same_result_other_seed_other_result() -> None:
    a, b = simulate(SMALL), simulate(SMALL)
    assert a.summary() == b.summary()
    assert a.waits == b.waits
    assert simulate(replace(SMALL, seed=2)).summary() != a.summary()


def test_accounting_is_consistent() -> None:
    r = simulate(replace(SMALL, mode=PacingMode.PREDICTIVE))
    assert r.live_answers >= r.connected + r.abandons
    # Every live answer either reached an agent or was abandoned, except those still waiting
    # in the last 2 s of the run.
    assert r.live_answers - (r.connected + r.abandons) <= r.config.agents
    assert 0.0 < r.occupancy <= 1.0
    assert len(r.waits) == r.connected + r.abandons
    assert all(0.0 <= w <= 2.0 + 1e-9 for w in r.waits)
    assert r.calls_placed > r.live_answers
    assert r.decisions == int(SMALL.duration / SMALL.tick) + 1


@pytest.mark.parametrize(
    "scenario",
    [
        SimConfig(agents=10, answer_rate=0.15, talk_mean=90.0, duration=2 * 3600.0, seed=3),
        SimConfig(agents=20, answer_rate=0.35, talk_mean=300.0, duration=3 * 3600.0, seed=4),
    ],
)
def test_predictive_stays_under_the_cap_and_beats_progressive(scenario: SimConfig) -> None:
    predictive = simulate(replace(scenario, mode=PacingMode.PREDICTIVE))
    progressive = simulate(replace(scenario, mode=PacingMode.PROGRESSIVE))
    assert predictive.live_answers > 100
    assert predictive.abandon_rate <= 0.03
    assert predictive.occupancy > progressive.occupancy


def test_progressive_never_abandons() -> None:
    r = simulate(replace(SMALL, mode=PacingMode.PROGRESSIVE))
    assert r.abandons == 0 and r.connected > 0


def test_agentless_never_abandons_and_uses_sessions() -> None:
    r = simulate(replace(SMALL, mode=PacingMode.AGENTLESS, agents=5))
    assert r.abandons == 0 and r.connected > 0


def test_zero_agents_place_no_calls() -> None:
    for mode in (PacingMode.PROGRESSIVE, PacingMode.POWER, PacingMode.PREDICTIVE):
        r = simulate(replace(SMALL, mode=mode, agents=0, duration=600.0))
        assert r.calls_placed == 0 and r.occupancy == 0.0


def test_ceilings_hold_in_the_simulation() -> None:
    r = simulate(replace(SMALL, agents=50, trunk_channels=40, calls_per_second=5, duration=1800.0))
    assert r.peak_channels <= 40
    assert r.peak_originates_per_second <= 5
    assert r.limited["trunk"] + r.limited["cps"] > 0


def test_a_ceiling_under_one_call_per_second_still_dials() -> None:
    """0.5 calls per second is one call per 2 s (as the runtime's shared trunk applies it), not none."""
    r = simulate(replace(SMALL, agents=50, calls_per_second=0.5, duration=600.0))
    assert 200 <= r.calls_placed <= 301 and r.peak_originates_per_second == 1


def test_parse_duration() -> None:
    assert parse_duration("8h") == 28800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ValueError):
        parse_duration("8 hours")


def test_cli_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--mode", "predictive", "--agents", "10", "--answer-rate", "0.15",
            "--talk-mean", "90", "--duration", "30m", "--seed", "1"]
    assert main([*argv, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    expected = simulate(replace(SMALL, duration=1800.0)).summary()
    assert {k: figures[k] for k in expected} == expected
    assert main(argv) == 0
    text = capsys.readouterr().out
    for label in ("occupancy", "abandon rate", "answered per agent-hour", "customer wait p95", "calls placed"):
        assert label in text


def test_cli_rejects_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--answer-rate", "0.95", "--duration", "1m"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dialer: answer rate") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["simulate", "--duration", "soon"])
