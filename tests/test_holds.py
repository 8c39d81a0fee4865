"""Kill-switches (issue 19): an operator suspends a tenant, a tenant admin a campaign; every dialer process stops
originating for it before its next decision (the gate's reserve script checks the holds, as it makes opt-outs
binding), calls up finish, who and why are audited; and nothing can switch the check off."""

from __future__ import annotations

import asyncio
import inspect
import re
from datetime import timedelta
from pathlib import Path

import pytest

import dialer.gate as gate_module
from dialer import holds
from dialer.audit import AuditLog
from dialer.campaigns import CONFIG_SCHEMA, CampaignStore
from dialer.cli import main
from dialer.config import SETTINGS
from dialer.gate import Gate, Request
from dialer.livestats import stats_key
from dialer.runtime.engine import build_gate, offset_clock
from dialer.runtime.policy import after_denial
from gateway.app import api_routes
from rules.model import Contact
from tests.runtime_support import AT, OriginateObserver, engine_config, eventually, numbers, setup_campaign
from tests.test_runtime_engine import engine_task, start_pbx

T = "acme"
ROOT = Path(__file__).resolve().parent.parent


def reserve(gate: Gate, client, campaign_id: str, phone: str, call_id: str):
    stored = CampaignStore(client).get(T, campaign_id)
    return gate.reserve_many([Request(Contact(phone, "FR", "75011"), stored.gate_campaign(), call_id)], AT)[0]


def test_the_gate_refuses_every_reservation_while_a_hold_is_in_force(redis_url, redis_client, tmp_path):
    first = setup_campaign(redis_client, tmp_path, numbers(4, base="+331456780"))
    second = setup_campaign(redis_client, tmp_path, numbers(4, base="+331456781"), list_id="other")
    gate = build_gate(redis_client, engine_config(redis_url))
    holds.suspend_campaign(redis_client, T, first, reason="complaint 42", by="user:admin-user", at=AT)
    denied = reserve(gate, redis_client, first, "+33145678001", "k1")
    assert not denied.allowed and [r.code for r in denied.reasons] == ["CAMPAIGN_SUSPENDED"]
    assert after_denial(denied, AT).action == "retry"  # the contact waits; it does not leave the campaign
    assert reserve(gate, redis_client, second, "+33145678102", "k2").allowed  # the other campaign dials on
    holds.suspend_tenant(redis_client, T, reason="abuse report", by="operator:alice", at=AT)
    blocked = reserve(gate, redis_client, second, "+33145678103", "k3")
    assert [r.code for r in blocked.reasons] == ["TENANT_SUSPENDED"]
    assert holds.resume_tenant(redis_client, T, reason="cleared", by="operator:alice", at=AT)
    assert holds.resume_campaign(redis_client, T, first, reason="resolved", by="user:admin-user", at=AT)
    assert reserve(gate, redis_client, first, "+33145678004", "k4").allowed
    entries = list(AuditLog(redis_client).entries(T))
    trail = [(e.actor, e.payload["action"], e.payload["scope"]) for e in entries if e.kind == "hold"]
    assert trail == [("user:admin-user", "suspend", "campaign"), ("operator:alice", "suspend", "tenant"),
                     ("operator:alice", "resume", "tenant"), ("user:admin-user", "resume", "campaign")]
    refused = [e for e in entries if e.kind == "gate_decision" and not e.payload["allowed"]]
    assert {r[0] for e in refused for r in e.payload["reasons"]} >= {"CAMPAIGN_SUSPENDED", "TENANT_SUSPENDED"}
    with pytest.raises(holds.HoldError):
        holds.suspend_tenant(redis_client, T, reason="   ", by="operator:alice", at=AT)  # a reason is required


def test_a_hold_written_after_the_decision_still_stops_the_reservation(redis_url, redis_client, tmp_path):
    """The decision was made on facts read before the hold (another process, a slow read): the reserve script
    checks the holds atomically, so the call is not reserved."""
    from rules import evaluate

    campaign = setup_campaign(redis_client, tmp_path, numbers(2, base="+331456782"))

    def evaluate_then_suspend(*args, **kwargs):
        decision = evaluate(*args, **kwargs)
        if not redis_client.exists(holds.operator_key(T)):
            holds.suspend_tenant(redis_client, T, reason="suspended mid-decision", by="operator:bob", at=AT)
        return decision

    base = build_gate(redis_client, engine_config(redis_url))
    gate = Gate(redis_client, base.packs, base.registries, audit=base.audit, evaluate=evaluate_then_suspend)
    result = reserve(gate, redis_client, campaign, "+33145678201", "m1")
    assert not result.allowed and result.reasons[0].code == "TENANT_SUSPENDED"
    assert redis_client.hget(f"t:{{{T}}}:p:+33145678201:att", "m1") is None  # nothing reserved


async def test_suspending_stops_every_new_call_at_once_and_lets_calls_up_finish(redis_url, redis_client, tmp_path):
    phones = [p for p in numbers(24, base="+331456790") if p[-1] not in "2347"]
    campaign = setup_campaign(redis_client, tmp_path, phones)
    clock = offset_clock(AT, 1.0)
    pbx = await start_pbx(queues={"dialer": 1})
    audit = AuditLog(redis_client)
    try:
        async with OriginateObserver(pbx.port) as observer:
            stop, task = engine_task(redis_url, pbx, clock)
            await eventually(lambda: sum(observer.by_number.values()) >= 2, timeout=30)
            for scope in ("campaign", "tenant"):
                if scope == "campaign":
                    holds.suspend_campaign(redis_client, T, campaign, reason="complaint 7", by="user:admin", at=clock())
                else:
                    holds.suspend_tenant(redis_client, T, reason="abuse report 12", by="operator:alice", at=clock())
                seq = max(e.seq for e in audit.entries(T) if e.kind == "hold")
                reason = b"complaint 7" if scope == "campaign" else b"abuse report 12"
                await eventually(lambda r=reason: r in (redis_client.hget(stats_key(T, campaign), "pacing_why") or b""),
                                 timeout=30)  # the dashboard's text says who held it and why
                await asyncio.sleep(1.0)
                entries = list(audit.entries(T))
                allowed = [e for e in entries if e.kind == "gate_decision" and e.payload["allowed"]]
                assert [e for e in allowed if e.seq > seq] == []  # no reservation, so no call, after the hold
                reserved = {e.payload["call_id"] for e in allowed}
                assert set(observer.call_ids) <= reserved
                # the calls up when the hold came finished normally, with their outcomes
                await eventually(lambda n=len(reserved): len([e for e in audit.entries(T)
                                                              if e.kind == "call_outcome"]) == n, timeout=30)
                assert not [e for e in audit.entries(T) if e.kind == "call_outcome" and e.seq > seq
                            and e.payload["outcome"] not in ("answered", "opted_out")]
                if scope == "campaign":
                    holds.resume_campaign(redis_client, T, campaign, reason="done", by="user:admin", at=clock())
                    before = sum(observer.by_number.values())
                    await eventually(lambda b=before: sum(observer.by_number.values()) > b, timeout=30)
            holds.resume_tenant(redis_client, T, reason="cleared", by="operator:alice", at=clock())
            await eventually(lambda: task.done() or CampaignStore(redis_client).get(T, campaign).status == "completed",
                             timeout=90)
            stop.set()
            await task
    finally:
        await pbx.stop()
    assert sorted(observer.by_number) == sorted(phones) and set(observer.by_number.values()) == {1}


def test_operators_suspend_and_resume_from_the_shell(redis_url, redis_client, monkeypatch, capsys):
    monkeypatch.setenv("DIALER_REDIS_URL", redis_url)
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    redis_client.sadd("tenants", T)
    assert main(["tenants", "suspend", T, "--reason", "unpaid invoices", "--by", "carol"]) == 0
    assert "suspended" in capsys.readouterr().out
    [hold] = holds.tenant_holds(redis_client, T)
    assert (hold.code, hold.by, hold.reason) == ("TENANT_SUSPENDED", "operator:carol", "unpaid invoices")
    assert main(["tenant", "holds", T]) == 0 and "unpaid invoices" in capsys.readouterr().out
    assert main(["tenant", "resume", T, "--reason", "paid", "--by", "carol"]) == 0
    assert holds.tenant_holds(redis_client, T) == []
    assert main(["tenant", "resume", T, "--reason", "again"]) == 1  # nothing to lift: said so
    assert main(["tenant", "suspend", "nobody", "--reason", "x"]) == 1


# --- the gate cannot be switched off --------------------------------------------------------------------------

_SWITCH = re.compile(r"hold|suspen|kill|bypass|skip|gate(?!way)|unsafe|force|ignore|override|disable", re.I)
# Files allowed to read the environment, and why: none of them is on the reservation path.
# Fields whose names match but which only take rights away (reviewed): they cannot relax the gate.
_REVIEWED = {"PATCH /v1/users/{name}: disabled"}
_ENV_READERS = {"dialer/config.py", "dialer/private_files.py", "dialer/demo.py", "dialer/redisproc.py",
                "dialer/record/pgproc.py"}  # (pgproc: where the PostgreSQL binaries are, for tests and the demo)


def _names(schema, prefix=""):
    for name, sub in (schema or {}).get("properties", {}).items():
        yield f"{prefix}{name}"
        yield from _names(sub, f"{prefix}{name}.")
        yield from _names(sub.get("items"), f"{prefix}{name}[].")


def test_no_setting_campaign_field_api_field_or_environment_variable_bypasses_the_gate():
    assert not [s.name for s in SETTINGS if _SWITCH.search(s.name) or _SWITCH.search(s.env)]
    assert not [n for n in _names(CONFIG_SCHEMA) if _SWITCH.search(n)]
    fields = [f"{r.method} {r.path}: {n}" for r in api_routes() for n in _names(r.body)]
    assert not [f for f in fields if _SWITCH.search(f.split(": ", 1)[1]) and f not in _REVIEWED]
    readers = set()
    for path in [*ROOT.glob("dialer/**/*.py"), *ROOT.glob("gateway/**/*.py"), *ROOT.glob("rules/**/*.py")]:
        if re.search(r"os\.environ|getenv\(", path.read_text()):
            readers.add(str(path.relative_to(ROOT)))
    assert readers <= _ENV_READERS, readers - _ENV_READERS
    # The reserve script checks the holds for every reservation, first, with nothing from its arguments to skip it.
    assert "hold_of(p, cjson.decode(ARGV[b + 2]).campaign)" in gate_module._RESERVE
    assert gate_module._RESERVE.index("hold_of(p,") < gate_module._RESERVE.index("v ~= ARGV[b]")
    assert "ARGV" not in holds.HOLD_LUA and "if" not in holds.HOLD_LUA.split("local function")[0]
    # and no parameter of the gate or the engine can turn it off
    from dialer.runtime.engine import Engine, RuntimeSettings

    parameters = [*inspect.signature(Gate).parameters, *inspect.signature(Engine).parameters,
                  *(f.name for f in __import__("dataclasses").fields(RuntimeSettings))]
    assert not [p for p in parameters if _SWITCH.search(p) and p != "gate"], parameters  # (the Gate object itself)


def test_every_campaign_option_at_once_does_not_get_past_a_hold(redis_url, redis_client, tmp_path):
    options = {k: True for k, v in CONFIG_SCHEMA["properties"].items() if v.get("type") == "boolean"}
    campaign = setup_campaign(redis_client, tmp_path, numbers(2, base="+331456783"), **options)
    holds.suspend_tenant(redis_client, T, reason="test", by="operator:x", at=AT - timedelta(minutes=1))
    result = reserve(build_gate(redis_client, engine_config(redis_url)), redis_client, campaign, "+33145678301", "o1")
    assert not result.allowed and result.reasons[0].code == "TENANT_SUSPENDED"
