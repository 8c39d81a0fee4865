"""The stateful gate against a real redis-server, the real rule engine and packs, and real registry loads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from dialer import redisconn
from dialer.audit import AuditLog
from dialer.facts import FactStore, person_key
from dialer.gate import Gate, Request, Reservation
from dialer.registry.loader import load_registry
from dialer.registry.store import RegistryStore
from rules import evaluate, load_packs
from rules.model import Attempt, Campaign, Consent, Contact, Decision
from tests.race_support import race_context

KEY = "gate-test-key"
PACKS = load_packs()
# Tuesday 3 March 2026, 10:30 in Paris (UTC+1): inside the French weekday window 10:00-13:00.
AT = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
PARIS = Contact(phone="+33145678901", country="FR", postal_code="75011")
LISTED = Contact(phone="+33145678999", country="FR", postal_code="75011")  # on the Bloctel copy below
SALES = Campaign(id="c1", tenant="t1", purpose="telemarketing", audience="consumer", voice="human",
                 caller_id="+33162000000")
OTHER = Campaign(id="c2", tenant="t1", purpose="telemarketing", audience="consumer", voice="human",
                 caller_id="+33162000000")


def load_bloctel(client: redis.Redis, directory: Path, loaded_at: datetime = AT - timedelta(days=2)) -> None:
    path = directory / "bloctel.txt"
    path.write_text("0145678999\n0612345678\n0298765432\n")
    load_registry(client, "bloctel", path, loaded_at=loaded_at)


def make_gate(client: redis.Redis, **kwargs) -> Gate:
    return Gate(client, PACKS, RegistryStore(client, refresh_interval=0.0), secret_key=KEY, **kwargs)


@pytest.fixture
def gate(redis_client, tmp_path) -> Gate:
    load_bloctel(redis_client, tmp_path)
    return make_gate(redis_client)


def add_history(client: redis.Redis, n: int, at: datetime = AT - timedelta(days=3), e164: str = PARIS.phone) -> None:
    store = FactStore(client)
    for i in range(n):
        store.record_attempt("t1", e164, Attempt(at=at, campaign="c0", outcome="no_answer", call_id=f"old-{i}"))


def attempts(client: redis.Redis, e164: str = PARIS.phone, tenant: str = "t1") -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(person_key(tenant, e164, "att")).items()}


# --- single decisions --------------------------------------------------------------------------

def test_allowed_contact_is_reserved_and_audited(gate, redis_client):
    result = gate.check_and_reserve(PARIS, SALES, AT, "call-1", contact_id="contact-42")
    assert isinstance(result, Reservation)
    assert (result.call_id, result.e164, result.tenant, result.campaign) == ("call-1", PARIS.phone, "t1", "c1")
    assert result.decision.allowed and result.version == 1
    assert '"outcome":"reserved"' in attempts(redis_client)["call-1"]
    [entry] = list(gate.audit.entries("t1"))
    assert entry.seq == result.audit_seq == 1 and entry.kind == "gate_decision"
    assert entry.payload["allowed"] is True and entry.payload["call_id"] == "call-1"
    assert entry.payload["packs"] == ["fr@2026.3"] and entry.payload["contact_id"] == "contact-42"
    assert entry.payload["person"] == gate.audit.person_ref(PARIS.phone)
    assert PARIS.phone not in str(entry.payload) and entry.payload["phone"] == "+33*******01"
    assert entry.payload["registries"] == {"bloctel": "2026-03-01T09:30:00Z"}  # the copy the decision used
    assert gate.audit.verify("t1").ok


def test_denials_carry_the_pack_reasons_and_are_audited(gate, redis_client):
    early = gate.check_and_reserve(PARIS, SALES, datetime(2026, 3, 3, 8, 59, 59, tzinfo=UTC), "call-early")
    assert isinstance(early, Decision) and not early.allowed
    assert early.codes() == ["OUTSIDE_CALLING_HOURS"]
    assert early.next_allowed_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    listed = gate.check_and_reserve(LISTED, SALES, AT, "call-listed")
    assert isinstance(listed, Decision) and listed.codes() == ["NATIONAL_REGISTRY"]
    assert listed.reasons[0].rule == "fr/bloctel"
    assert attempts(redis_client) == {} and attempts(redis_client, LISTED.phone) == {}
    entries = list(gate.audit.entries("t1"))
    assert [e.payload["allowed"] for e in entries] == [False, False]
    assert entries[0].payload["reasons"][0][:2] == ["OUTSIDE_CALLING_HOURS", "fr/hours"]
    assert entries[1].payload["reasons"][0][:2] == ["NATIONAL_REGISTRY", "fr/bloctel"]
    assert entries[1].payload["call_id"] == "call-listed"


def test_fifth_attempt_in_30_days_is_denied(gate, redis_client):
    add_history(redis_client, 3)
    assert isinstance(gate.check_and_reserve(PARIS, SALES, AT, "fourth"), Reservation)
    fifth = gate.check_and_reserve(PARIS, OTHER, AT + timedelta(hours=1), "fifth")  # caps count all campaigns
    assert isinstance(fifth, Decision) and "FREQUENCY_CAP" in fifth.codes()
    assert set(attempts(redis_client)) == {"old-0", "old-1", "old-2", "fourth"}


def test_release_frees_the_slot_and_placed_calls_stay_counted(gate, redis_client):
    add_history(redis_client, 3)
    first = gate.check_and_reserve(PARIS, SALES, AT, "r-1")
    assert isinstance(first, Reservation)
    assert "FREQUENCY_CAP" in gate.check(PARIS, SALES, AT).codes()
    assert gate.release("t1", "r-1", AT) is True
    assert "r-1" not in attempts(redis_client)
    assert gate.release("t1", "r-1", AT) is False  # nothing left to release
    second = gate.check_and_reserve(PARIS, SALES, AT, "r-2")
    assert isinstance(second, Reservation)
    gate.record_outcome("t1", "r-2", "no_answer", AT + timedelta(seconds=40))
    assert gate.release("t1", "r-2", AT) is False  # a placed call always counts
    assert "FREQUENCY_CAP" in gate.check(PARIS, SALES, AT + timedelta(minutes=5)).codes()
    kinds = [(e.kind, e.payload.get("allowed")) for e in gate.audit.entries("t1")]
    assert kinds == [("gate_decision", True), ("gate_release", None), ("gate_decision", True),
                     ("call_outcome", None)]
    assert gate.audit.verify("t1").ok


def test_refused_outcome_starts_the_cooloff(gate, redis_client):
    result = gate.check_and_reserve(PARIS, SALES, AT, "call-r")
    assert isinstance(result, Reservation)
    gate.record_outcome("t1", "call-r", "refused", AT + timedelta(minutes=1))
    later = gate.check(PARIS, OTHER, AT + timedelta(days=59))
    assert "REFUSAL_COOLOFF" in later.codes()
    [cooloff] = [r for r in later.reasons if r.code == "REFUSAL_COOLOFF"]
    assert cooloff.until == AT + timedelta(days=60) and cooloff.rule == "fr/refusal"
    assert "REFUSAL_COOLOFF" not in gate.check(PARIS, OTHER, AT + timedelta(days=63)).codes()
    stored = FactStore(redis_client).attempts("t1", PARIS.phone)
    assert [(a.outcome, a.at) for a in stored] == [("refused", AT)]


def test_optout_denies_at_once(gate, redis_client):
    FactStore(redis_client).add_optout("t1", PARIS.phone, at=AT - timedelta(seconds=1), source="keypress")
    result = gate.check_and_reserve(PARIS, SALES, AT, "call-o")
    assert isinstance(result, Decision) and result.codes() == ["COMPANY_DNC"]
    FactStore(redis_client).add_optout("t1", LISTED.phone, at=AT, source="agent", scope="campaign", campaign="c1")
    assert "CAMPAIGN_DNC" in gate.check(LISTED, SALES, AT).codes()


def test_check_is_what_if(gate, redis_client):
    assert gate.check(PARIS, SALES, AT).allowed
    assert attempts(redis_client) == {} and gate.audit.head("t1").seq == 0
    gate.check(PARIS, SALES, AT, audit=True)
    [entry] = list(gate.audit.entries("t1"))
    assert entry.payload["mode"] == "check" and "call_id" not in entry.payload


def test_invalid_number_is_denied_and_audited_masked(gate, redis_client):
    result = gate.check_and_reserve(Contact(phone="+3301", country="FR"), SALES, AT, "bad")
    assert isinstance(result, Decision) and result.codes() == ["INVALID_NUMBER"]
    [entry] = list(gate.audit.entries("t1"))
    assert entry.payload["person"] is None and entry.payload["allowed"] is False


def test_missing_or_stale_registry_copy_denies(redis_client, tmp_path):
    gate = make_gate(redis_client)  # nothing loaded
    assert "REGISTRY_STALE" in gate.check(PARIS, SALES, AT).codes()
    load_bloctel(redis_client, tmp_path, loaded_at=AT - timedelta(days=31))
    assert "REGISTRY_STALE" in make_gate(redis_client).check(PARIS, SALES, AT).codes()
    assert "REGISTRY_STALE" in Gate(redis_client, PACKS, None, secret_key=KEY).check(PARIS, SALES, AT).codes()


def test_tenants_are_isolated(gate, redis_client):
    add_history(redis_client, 4)
    assert "FREQUENCY_CAP" in gate.check(PARIS, SALES, AT).codes()
    other = Campaign(id="c1", tenant="t2", caller_id="+33162000000")
    result = gate.check_and_reserve(PARIS, other, AT, "t2-call")
    assert isinstance(result, Reservation) and result.tenant == "t2"
    assert gate.audit.head("t1").seq == 0 and gate.audit.head("t2").seq == 1


def test_gate_requires_the_secret_key(redis_client):
    with pytest.raises(ValueError, match="secret_key"):
        Gate(redis_client, PACKS, None)


# --- interleavings made deterministic: the engine is the real one, something happens while it runs -----

def engine_with(side_effect):
    """The real engine, with `side_effect(n)` run during its n-th call: i.e. after the gate read the facts
    and before it reserves, exactly where a concurrent writer would strike."""
    calls = {"n": 0}

    def run(*args, **kwargs):
        calls["n"] += 1
        decision = evaluate(*args, **kwargs)
        side_effect(calls["n"])
        return decision

    return run


def test_optout_between_read_and_reserve_prevents_the_call(redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path)
    store = FactStore(redis_client)

    def opt_out(n):
        if n == 1:
            store.add_optout("t1", PARIS.phone, at=AT, source="keypress")

    gate = make_gate(redis_client, evaluate=engine_with(opt_out))
    result = gate.check_and_reserve(PARIS, SALES, AT, "racing")
    assert isinstance(result, Decision) and result.codes() == ["COMPANY_DNC"]
    assert attempts(redis_client) == {}
    [entry] = list(gate.audit.entries("t1"))  # only the final decision is audited
    assert entry.payload["allowed"] is False


def test_last_slot_taken_between_read_and_reserve(redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path)
    add_history(redis_client, 3)
    rival = make_gate(redis_client)

    def rival_reserves(n):
        if n == 1:
            assert isinstance(rival.check_and_reserve(PARIS, OTHER, AT, "rival"), Reservation)

    gate = make_gate(redis_client, evaluate=engine_with(rival_reserves))
    result = gate.check_and_reserve(PARIS, SALES, AT, "mine")
    assert isinstance(result, Decision) and "FREQUENCY_CAP" in result.codes()
    assert set(attempts(redis_client)) == {"old-0", "old-1", "old-2", "rival"}


def test_endless_changes_end_in_a_contention_denial(redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path)

    def bump(n):
        redis_client.incr(person_key("t1", PARIS.phone, "ver"))

    gate = make_gate(redis_client, evaluate=engine_with(bump), max_rounds=3)
    result = gate.check_and_reserve(PARIS, SALES, AT, "c")
    assert isinstance(result, Decision) and result.codes() == ["CONTENTION"]
    assert attempts(redis_client) == {}
    [entry] = list(gate.audit.entries("t1"))
    assert entry.payload["reasons"][0][0] == "CONTENTION"


# --- batches ----------------------------------------------------------------------------------

def test_reserve_many_mixes_reservations_and_denials(gate, redis_client):
    add_history(redis_client, 3)
    requests = [
        Request(PARIS, SALES, "b-1", "k1"),
        Request(LISTED, SALES, "b-2", "k2"),
        Request(PARIS, OTHER, "b-3", "k3"),  # the same person again: only one of the two fits the cap
        Request(Contact(phone="+33298765400", country="FR"), SALES, "b-4", "k4"),
        Request(Contact(phone="not a number"), SALES, "b-5", "k5"),
    ]
    results = gate.reserve_many(requests, AT)
    assert [type(r).__name__ for r in results] == ["Reservation", "Decision", "Decision", "Reservation", "Decision"]
    assert results[1].codes() == ["NATIONAL_REGISTRY"]
    assert "FREQUENCY_CAP" in results[2].codes()
    assert results[4].codes() == ["INVALID_NUMBER"]
    entries = list(gate.audit.entries("t1"))
    assert sorted(e.payload["contact_id"] for e in entries) == ["k1", "k2", "k3", "k4", "k5"]
    assert gate.audit.verify("t1").ok
    assert gate.check_many([Request(PARIS, SALES), Request(LISTED, SALES)], AT)[1].codes() == ["NATIONAL_REGISTRY"]


def test_batch_survives_a_flushed_script_cache(gate, redis_client):
    redis_client.script_flush()
    results = gate.reserve_many([Request(PARIS, SALES, "s-1"), Request(LISTED, SALES, "s-2")], AT)
    assert isinstance(results[0], Reservation) and isinstance(results[1], Decision)
    assert gate.audit.verify("t1").checked == 2


def test_redis_down_denies_with_a_reason(redis_factory, tmp_path):
    server = redis_factory.start()
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    load_bloctel(client, tmp_path)
    gate = make_gate(client)
    assert gate.check(PARIS, SALES, AT).allowed
    server.kill()
    result = gate.check_and_reserve(PARIS, SALES, AT, "down")
    assert isinstance(result, Decision) and "STATE_UNAVAILABLE" in result.codes()


# --- several processes against one redis-server ---------------------------------------------------

def _race_worker(url: str, barrier, results, call_id: str) -> None:
    client = redisconn.connect(url)  # a plain Redis or a Redis Cluster (tests/test_redis_cluster.py)
    gate = make_gate(client)
    gate.check(PARIS, SALES, AT)  # warm caches so that the processes really start together
    barrier.wait(30)
    result = gate.check_and_reserve(PARIS, SALES, AT, call_id)
    results.put((call_id, "reserved" if isinstance(result, Reservation) else ",".join(result.codes())))
    client.close()


def test_processes_racing_for_the_last_attempt_only_one_wins(redis_url, redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path)
    add_history(redis_client, 3, at=AT - timedelta(days=1))
    ctx = race_context()
    n = 8
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(redis_url, barrier, results, f"p{i}")) for i in range(n)]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in range(n))
    for p in procs:
        p.join(30)
    winners = [c for c, o in outcomes.items() if o == "reserved"]
    assert len(winners) == 1
    assert all("FREQUENCY_CAP" in o for c, o in outcomes.items() if c not in winners)
    assert set(attempts(redis_client)) == {"old-0", "old-1", "old-2", winners[0]}
    audit = AuditLog(redis_client, KEY)
    assert audit.verify("t1").ok and audit.head("t1").seq == n
    assert sum(e.payload["allowed"] for e in audit.entries("t1")) == 1


NUMBERS = [f"+3314567{n:04d}" for n in range(40)]


def _reserver(url: str, barrier, results, worker: int) -> None:
    client = redisconn.connect(url)  # a plain Redis or a Redis Cluster (tests/test_redis_cluster.py)
    gate = make_gate(client)
    barrier.wait(30)
    order = list(NUMBERS)
    random.Random(worker).shuffle(order)
    for e164 in order:
        result = gate.check_and_reserve(Contact(e164, "FR"), SALES, AT, f"w{worker}-{e164}")
        if isinstance(result, Reservation):
            results.put((e164, result.version))
    results.put(None)
    client.close()


def _opt_outer(url: str, barrier, results) -> None:
    client = redisconn.connect(url)  # a plain Redis or a Redis Cluster (tests/test_redis_cluster.py)
    store = FactStore(client)
    barrier.wait(30)
    for e164 in NUMBERS:
        store.add_optout("t1", e164, at=AT, source="keypress")
    results.put(None)
    client.close()


def test_optout_racing_reservations_no_call_after_the_optout(redis_url, redis_client, tmp_path):
    """Every write to a person bumps their version; the opt-out's version is the one no reservation holds.
    No reservation may carry a version above the opt-out's: that would be a call reserved after it."""
    load_bloctel(redis_client, tmp_path)
    ctx = race_context()
    workers = 4
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_reserver, args=(redis_url, barrier, results, w)) for w in range(workers)]
    procs.append(ctx.Process(target=_opt_outer, args=(redis_url, barrier, results)))
    for p in procs:
        p.start()
    reserved: dict[str, list[int]] = {}
    done = 0
    while done < workers + 1:
        item = results.get(timeout=120)
        if item is None:
            done += 1
        else:
            reserved.setdefault(item[0], []).append(item[1])
    for p in procs:
        p.join(30)
    store = FactStore(redis_client)
    for e164 in NUMBERS:
        final = store.version("t1", e164)
        versions = sorted(reserved.get(e164, []))
        assert len(versions) <= 4  # the French cap holds too
        optout_version = ({*range(1, final + 1)} - set(versions)).pop()  # the only other write
        assert all(v < optout_version for v in versions), (e164, versions, optout_version)
        assert store.optout("t1", e164) is not None
        assert len(store.attempts("t1", e164)) == len(versions)
    assert AuditLog(redis_client, KEY).verify("t1").ok


def test_reserved_attempt_is_stored_exactly_as_factstore_stores_attempts():
    from dialer.facts import attempt_json
    from dialer.gate import attempt_record
    assert attempt_record(AT, "c1", "x-1") == attempt_json(Attempt(AT, "c1", "reserved", "x-1"))


def test_lost_audit_head_blocks_reservations_before_any_write(gate, redis_client):
    assert isinstance(gate.check_and_reserve(PARIS, SALES, AT, "first"), Reservation)
    redis_client.delete("t:{t1}:audit:head")  # the trail cannot be continued safely
    result = gate.check_and_reserve(Contact("+33298765400", "FR"), SALES, AT, "second")
    assert isinstance(result, Decision) and result.codes() == ["STATE_UNAVAILABLE"]
    assert attempts(redis_client, "+33298765400") == {}  # nothing reserved without its audit entry
    assert redis_client.xlen("t:{t1}:audit") == 1


def test_one_batch_across_tenants_keeps_their_trails_apart(gate, redis_client):
    t2 = Campaign(id="c1", tenant="t2", caller_id="+33162000000")
    results = gate.reserve_many([Request(PARIS, SALES, "a"), Request(PARIS, t2, "b"), Request(LISTED, t2, "c")], AT)
    assert [type(r).__name__ for r in results] == ["Reservation", "Reservation", "Decision"]
    assert gate.audit.head("t1").seq == 1 and gate.audit.head("t2").seq == 2
    assert gate.audit.verify("t1").ok and gate.audit.verify("t2").ok
    assert set(attempts(redis_client)) == {"a"} and set(attempts(redis_client, tenant="t2")) == {"b"}


def test_a_call_id_is_never_reused(gate, redis_client):
    assert isinstance(gate.check_and_reserve(PARIS, SALES, AT, "same"), Reservation)
    other = Contact("+33298765400", "FR")
    result = gate.check_and_reserve(other, SALES, AT, "same")
    assert isinstance(result, Decision) and result.codes() == ["DUPLICATE_CALL_ID"]
    assert attempts(redis_client, other.phone) == {}
    assert redis_client.get("t:{t1}:call:same") == PARIS.phone.encode()  # outcomes still reach the right person
    again = gate.check_and_reserve(PARIS, OTHER, AT + timedelta(hours=1), "same")
    assert isinstance(again, Decision) and again.codes() == ["DUPLICATE_CALL_ID"]
    assert [e.payload["allowed"] for e in gate.audit.entries("t1")] == [True, False, False]


# --- soak: processes reserving, recording outcomes, releasing and opting out at once -------------------

SOAK_NUMBERS = [f"+3314568{n:04d}" for n in range(30)]
WEEKDAYS = [datetime(2026, 3, d, 9, 30, tzinfo=UTC) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13)]


def _soak_caller(url: str, barrier, worker: int) -> None:
    client = redisconn.connect(url)  # a plain Redis or a Redis Cluster (tests/test_redis_cluster.py)
    gate = make_gate(client)
    rng = random.Random(worker)
    barrier.wait(60)
    for day, at in enumerate(WEEKDAYS):
        order = list(SOAK_NUMBERS)
        rng.shuffle(order)
        results = gate.reserve_many([Request(Contact(e, "FR"), SALES, f"w{worker}-d{day}-{e}") for e in order], at)
        for result in results:
            if not isinstance(result, Reservation):
                continue
            roll = rng.random()
            if roll < 0.15:
                assert gate.release("t1", result.call_id, at)
            else:
                outcome = "refused" if roll < 0.35 else rng.choice(("no_answer", "busy", "answered"))
                gate.record_outcome("t1", result.call_id, outcome, at + timedelta(minutes=2))
    client.close()


def _soak_opt_outer(url: str, barrier) -> None:
    client = redisconn.connect(url)  # a plain Redis or a Redis Cluster (tests/test_redis_cluster.py)
    store, audit = FactStore(client), AuditLog(client, KEY)
    rng = random.Random(99)
    barrier.wait(60)
    for e164 in rng.sample(SOAK_NUMBERS, 10):
        store.add_optout("t1", e164, at=WEEKDAYS[0], source="keypress")
        audit.append("t1", "optout", "test", {"person": audit.person_ref(e164)}, WEEKDAYS[0])
    client.close()


def test_soak_caps_cooloffs_optouts_hold_under_concurrency(redis_url, redis_client, tmp_path):
    load_bloctel(redis_client, tmp_path, loaded_at=WEEKDAYS[0] - timedelta(days=1))
    ctx = race_context()
    barrier = ctx.Barrier(5)
    procs = [ctx.Process(target=_soak_caller, args=(redis_url, barrier, w)) for w in range(4)]
    procs.append(ctx.Process(target=_soak_opt_outer, args=(redis_url, barrier)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    audit = AuditLog(redis_client, KEY)
    assert audit.verify("t1").ok
    store = FactStore(redis_client)
    entries = list(audit.entries("t1"))
    for e164 in SOAK_NUMBERS:
        ref = audit.person_ref(e164)
        history = store.attempts("t1", e164)
        times = sorted(a.at for a in history)
        for i in range(len(times)):  # no 30-day window holds more than 4 attempts (released ones do not count)
            assert sum(1 for t in times if times[i] <= t < times[i] + timedelta(days=30)) <= 4, e164
        mine = [e for e in entries if e.payload.get("person") == ref]
        stop = next((e.seq for e in mine if e.kind == "optout"), None)
        refused = {e.payload["call_id"]: e.seq for e in mine if e.kind == "call_outcome"
                   and e.payload["outcome"] == "refused"}
        first_refusal = min(refused.values(), default=None)
        for e in mine:
            if e.kind == "gate_decision" and e.payload["allowed"]:
                assert stop is None or e.seq < stop, f"{e164}: reserved after its opt-out"
                assert first_refusal is None or e.seq < first_refusal, f"{e164}: reserved within 60 days of a refusal"
        assert all(a.outcome != "reserved" for a in history)  # every reservation was released or got an outcome


def test_opted_out_outcome_blocks_even_before_the_dnc_entry(gate, redis_client):
    result = gate.check_and_reserve(PARIS, SALES, AT, "oo-1")
    assert isinstance(result, Reservation)
    gate.record_outcome("t1", "oo-1", "opted_out", AT + timedelta(minutes=1))
    assert FactStore(redis_client).optout("t1", PARIS.phone) is None  # the runtime has not written it yet
    later = gate.check_and_reserve(PARIS, OTHER, AT + timedelta(days=1), "oo-2")
    assert isinstance(later, Decision) and "COMPANY_DNC" in later.codes()


# --- large batches: Redis reserves one slice while the gate decides the next (dialer.gate.STREAM_SLICE) ------

def _big_batch(n: int) -> list[Request]:
    """n requests over n // 3 numbers, each number three times (in different slices and in the same one): Paris
    numbers, a listed number, an invalid one, and Berlin numbers (Germany: opt-in; see _world)."""
    people = [Contact(f"+3314567{k:04d}", "FR", "75011") if k % 10 else Contact(f"+49301234{k:04d}")
              for k in range(n // 3 - 2)] + [LISTED, Contact("nope")]
    requests = [Request(people[k % len(people)], SALES if k % 2 else OTHER, f"big-{k}", f"k{k}") for k in range(n)]
    requests[5] = Request(people[0], SALES, "big-5", "k5")  # the same number twice in the first slice too
    return requests


def _world(client: redis.Redis, directory: Path) -> None:
    """Bloctel; some French people near the cap (4 per 30 days), so repeats get denied; two numbers erased
    (suppressed); Berlin numbers with consent for every other one (Germany is opt-in)."""
    from dialer.suppression import Suppression

    load_bloctel(client, directory)
    for k in range(1, 40):
        if k % 10:
            add_history(client, 3 if k % 2 else 2, e164=f"+3314567{k:04d}")
    pipe = client.pipeline(transaction=True)
    for k in (41, 57):
        Suppression(client, KEY).queue_add(pipe, "t1", f"+3314567{k:04d}", AT - timedelta(days=1), reason="erasure",
                                           actor="test")
    pipe.execute()
    store = FactStore(client)
    for k in range(0, 200, 20):
        store.add_consent("t1", f"+49301234{k:04d}",
                          Consent(given_at=AT - timedelta(days=5), written=True, source="form"))


def test_large_batch_is_decided_as_without_streaming(redis_url, redis_client, tmp_path, monkeypatch):
    """The streamed round reserves exactly what the plain rounds reserve for the same call, with the same
    decisions (repeated people included), and audits every request once, in one intact chain."""
    import dialer.gate
    from dialer.gate import STREAM_SLICE

    n = 3 * STREAM_SLICE + 17
    _world(redis_client, tmp_path)
    calls: list[int] = []
    original = dialer.gate.Gate._reserve_streamed

    def spy(self, *args):
        calls.append(len(args[3]))
        return original(self, *args)

    monkeypatch.setattr(dialer.gate.Gate, "_reserve_streamed", spy)
    streamed = make_gate(redis_client).reserve_many(_big_batch(n), AT)
    assert calls == [n]  # the first round was streamed

    other = redis.Redis.from_url(redis_url, db=1)
    other.flushdb()
    _world(other, tmp_path)
    monkeypatch.setattr(dialer.gate, "STREAM_SLICE", 10 * n)  # the same call, not streamed
    plain = make_gate(other).reserve_many(_big_batch(n), AT)
    monkeypatch.undo()

    def summary(results):
        return [(type(r).__name__, r.decision if isinstance(r, Reservation) else r) for r in results]

    assert summary(streamed) == summary(plain)
    kinds = {type(r).__name__ for r in streamed}
    assert kinds == {"Reservation", "Decision"}
    codes = {c for r in streamed if isinstance(r, Decision) for c in r.codes()}
    assert {"FREQUENCY_CAP", "NATIONAL_REGISTRY", "INVALID_NUMBER", "ERASED_SUPPRESSED", "NO_CONSENT"} <= codes
    assert any(isinstance(r, Reservation) and r.e164.startswith("+49") for r in streamed)
    # German consent uses are recorded for retention, as in the plain path
    used = sorted(k for k in redis_client.scan_iter("t:{t1}:p:*:consent_used"))
    assert used and used == sorted(k for k in other.scan_iter("t:{t1}:p:*:consent_used"))
    gate = make_gate(redis_client)
    assert gate.audit.verify("t1").ok and gate.audit.head("t1").seq == n
    assert sorted(e.payload["contact_id"] for e in gate.audit.entries("t1")) == sorted(f"k{k}" for k in range(n))
    # no person got more attempts than the cap allows, whatever slice their requests fell in
    for k in range(n // 3 - 2):
        assert len(attempts(redis_client, f"+3314567{k:04d}")) <= 4
    other.flushdb()
    other.close()


def test_large_batch_survives_a_flushed_script_cache(gate, redis_client):
    from dialer.gate import STREAM_SLICE

    redis_client.script_flush()
    results = gate.reserve_many(_big_batch(2 * STREAM_SLICE + 5), AT)
    assert sum(isinstance(r, Reservation) for r in results) > STREAM_SLICE
    assert gate.audit.verify("t1").ok and gate.audit.head("t1").seq == 2 * STREAM_SLICE + 5


def test_large_batch_with_redis_gone_denies_unreserved(redis_factory, tmp_path):
    server = redis_factory.start()
    client = redis.Redis.from_url(server.url)
    load_bloctel(client, tmp_path)
    gate = make_gate(client)
    server.kill()
    results = gate.reserve_many(_big_batch(400), AT)
    assert all(isinstance(r, Decision) and r.codes() == ["STATE_UNAVAILABLE"] for r in results)
