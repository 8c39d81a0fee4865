"""Log scan: an end-to-end run with every log at DEBUG, through the production logging set-up, must not put a
secret or a full phone number in the log output.

The run: the sandbox PBX over real TCP with a known AMI secret (and one login with a wrong secret), the AMI
pool originating calls to known numbers (one callee presses the opt-out digit, recorded through the audited
fact store), the gate deciding and reserving, a contact import with those numbers (and bad rows), the HTTP
gateway (with the production access logger) receiving an opt-out, a consent and a query with a Bearer token,
requests with a wrong token, the campaign engine (`dialer run`) dialing a campaign to completion, and an
erasure. Then the captured text is searched for every secret and every
spelling of every number (E.164, without +, national, with spaces, percent-encoded)."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from dialer import privacy
from dialer.ami.client import AMIClient, AuthenticationError
from dialer.ami.optouts import OptOutRecorder
from dialer.ami.originate import OriginateRequest, dial_string
from dialer.ami.pool import AMIPool
from dialer.audit import AuditLog
from dialer.commands.serve import AccessLogger
from dialer.config import AsteriskServer, load_config
from dialer.contacts.jobs import create_import, run_import_inline
from dialer.facts import FactStore
from dialer.gate import Gate
from dialer.logs import setup_logging
from dialer.registry.store import RegistryStore
from dialer.runtime.agents import WrapupTable
from dialer.runtime.engine import RuntimeSettings, offset_clock, run_engine
from dialer.sandbox.server import SandboxServer
from dialer.sandbox.settings import SandboxSettings
from dialer.suppression import configure
from gateway.app import make_app
from gateway.auth import AuthStore
from rules import load_packs
from rules.model import Campaign, Contact
from tests.runtime_support import AT as RUN_AT
from tests.runtime_support import BLOCTEL, setup_campaign

AMI_SECRET = "Ami-S3cret-7f9c2e"
WRONG_SECRET = "Wrong-Ami-S3cret-11aa"
SECRET_KEY = "log-scan-secret-key-5d1e"
T = "acme"
SALES = Campaign(id="c1", tenant=T, caller_id="+33162000000")
# Known numbers, one per behaviour of the sandbox callee (its last digit): 5 answers, 2 busy, 7 opts out.
CALLED = ["+33145678915", "+33145678922", "+33145678937"]
IMPORTED = ["+33145678941", "+33612345678"]
API = "+33145678956"
# Dialed by the campaign engine (`dialer run`): answers, opts out by keypress during the recording notice, busy.
RUN = ["+33145678965", "+33145678977", "+33145678982"]


def spellings(e164: str) -> list[str]:
    national = "0" + e164[3:]
    spaced = " ".join([national[:2], *[national[i:i + 2] for i in range(2, len(national), 2)]])
    return [e164, e164[1:], national, spaced, "%2B" + e164[1:], e164[3:]]


async def eventually(predicate, timeout: float = 20.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


PBXS: list[SandboxServer] = []


async def start_pbx() -> int:
    pbx = SandboxServer(SandboxSettings(port=0, time_scale=0.02, seed=11, queues={"dialer": 3}, secret=AMI_SECRET))
    await pbx.start()
    PBXS.append(pbx)
    return pbx.port


@pytest.fixture
def captured():
    """The production logging set-up (masking filter on the handler) at DEBUG, writing to a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    setup_logging("DEBUG", stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    configure(b"")


async def test_no_secret_or_full_number_reaches_the_logs(captured, redis_url, redis_client, tmp_path: Path):
    configure(SECRET_KEY)
    sync = redis.Redis.from_url(redis_url)
    audit = AuditLog(sync, SECRET_KEY)
    facts = FactStore(sync, audit=audit)
    logging.getLogger("test.scan").info("calling %s and %s", CALLED[0], IMPORTED[0])  # our own careless line

    # 1. AMI: a wrong secret, then calls through the pool; an opt-out keypress recorded in the fact store.
    pbx = SandboxServer(SandboxSettings(port=0, time_scale=0.02, seed=7, queues={"dialer": 3},
                                        secret=AMI_SECRET))
    await pbx.start()
    try:
        wrong = AMIClient("127.0.0.1", pbx.port, "dialer", WRONG_SECRET, ping_interval=0, backoff_initial=0.05)
        with pytest.raises(AuthenticationError):
            await wrong.connect()
        await wrong.close()
        outcomes: dict[str, object] = {}
        recorder = OptOutRecorder.for_fact_store(facts)
        server = AsteriskServer("sbx", "127.0.0.1", pbx.port, "dialer", AMI_SECRET, "md5")
        async with AMIPool([server], on_outcome=lambda s, o: outcomes.setdefault(o.call_id, o),
                           on_optout=recorder) as pool:
            for number in CALLED:
                request = OriginateRequest(
                    call_id=uuid.uuid4().hex, campaign_id="c1", tenant=T, contact=number,
                    channel=dial_string("Local/{digits}@sim-callee", number), caller_id='"Acme" <100>',
                    timeout_ms=15000, queue="dialer", ai_disclosure=True)
                assert (await pool.originate("sbx", request)).status == "queued"
            await eventually(lambda: len(outcomes) == len(CALLED) and recorder.recorded == 1)
    finally:
        await pbx.stop()
    assert facts.optout(T, CALLED[2]) is not None

    # 2. The gate decides (and audits) with the numbers.
    gate = Gate(sync, load_packs(), RegistryStore(sync, refresh_interval=0.0), secret_key=SECRET_KEY)
    at = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    for number in [*CALLED, IMPORTED[0]]:
        gate.check_and_reserve(Contact(number, "FR", "75011"), SALES, at)
    gate.check(Contact("+3314567", "FR"), SALES, at)  # invalid: denied and logged?

    # 3. An import with the numbers, a bad row and a duplicate.
    path = tmp_path / "contacts.csv"
    path.write_text("nom;telephone;mobile\n"
                    f"Martin;{spellings(IMPORTED[0])[3]};{IMPORTED[1]}\n"
                    "Durand;not a number;\n"
                    f"Petit;{IMPORTED[0]};\n", encoding="utf-8")
    status = run_import_inline(sync, T, create_import(sync, T, path, "leads", region="FR").import_id)
    assert status["status"] == "committed"

    # 4. The gateway with the production access logger: token use, an opt-out, a consent, a query, bad tokens.
    config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY})
    client_redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AuthStore(client_redis)
    await store.create_tenant(T, "Acme")
    await store.create_user(T, "alice", "admin")
    token, _ = await store.create_token(T, "alice")
    client = TestClient(TestServer(make_app(config, client_redis), access_log_class=AccessLogger))
    await client.start_server()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        resp = await client.post("/v1/optouts", json={"phone": API, "source": "crm"}, headers=auth)
        assert resp.status == 201
        resp = await client.post("/v1/consents", json={"phone": spellings(API)[2], "country": "FR", "source": "web",
                                                        "ip": "198.51.100.7"}, headers=auth)
        assert resp.status == 201
        resp = await client.get("/v1/consents", params={"phone": API}, headers=auth)
        assert resp.status == 200
        resp = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}x"})
        assert resp.status == 401
        resp = await client.get("/v1/me", headers={"Authorization": f"Bearer {AMI_SECRET}"})
        assert resp.status == 401
    finally:
        await client.close()
        await client_redis.aclose()

    # 5. The campaign engine (what `dialer run` runs) dials a campaign to completion, an opt-out keypress included.
    campaign = setup_campaign(sync, tmp_path, [*RUN, BLOCTEL[0]], list_id="run", recording=True)
    stop = asyncio.Event()
    port = await start_pbx()
    engine_config = load_config(env={"DIALER_REDIS_URL": redis_url, "DIALER_SECRET_KEY": SECRET_KEY})
    engine = asyncio.create_task(run_engine(
        engine_config, stop_event=stop, clock=offset_clock(RUN_AT, 60.0), process_id="scan",
        servers=[AsteriskServer("sbx", "127.0.0.1", port, "dialer", AMI_SECRET, "md5")],
        settings=RuntimeSettings(dial_template="Local/{number}@sim-callee", lease_seconds=5.0, drain_seconds=10.0,
                                 agent_poll_seconds=0.2, stats_seconds=0.2, campaigns_seconds=0.2,
                                 wrapup=WrapupTable(0.1))))  # the sandbox agents' 2 s wrap-up at time scale 0.02
    try:
        await eventually(lambda: engine.done() or sync.hget(f"t:{{{T}}}:campaign:{campaign}", "status") == b"completed",
                         timeout=60)
    finally:
        stop.set()
        await engine
        await PBXS.pop().stop()
    assert facts.optout(T, RUN[1]) is not None

    # 6. An erasure.
    privacy.erase(sync, T, phone=IMPORTED[1], actor="user:dpo", at=at, secret_key=SECRET_KEY)
    sync.close()

    text = captured.getvalue()
    # The run did log, at DEBUG, about these very calls, imports and requests.
    assert "logged in" in text and "opt-out of call" in text and "import" in text and "/v1/optouts" in text
    assert "runtime scan started" in text and f"campaign {T}/{campaign}: complete" in text  # the engine's logs
    assert " DEBUG " in text
    leaks = [s for s in (AMI_SECRET, WRONG_SECRET, SECRET_KEY, token, token.split("_", 2)[2]) if s in text]
    assert not leaks, f"secrets in the log: {leaks}"
    numbers = [s for n in [*CALLED, *IMPORTED, API, *RUN, *BLOCTEL] for s in spellings(n) if s in text]
    assert not numbers, f"full numbers in the log: {numbers}"
    assert "*******15" in text  # and they are there, masked
