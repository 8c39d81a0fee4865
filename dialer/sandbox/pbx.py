"""The simulated Asterisk: channels, originated calls, our dialplan, app_queue and AI sessions.

No sockets here: the PBX hands every event (a list of AMI fields) to an `emit` callback, which
the AMI server (server.py) broadcasts. Time is asyncio's loop clock; every simulated duration is
multiplied by `settings.time_scale`.

Where the events come from:
- the called party: the reference's `[sim-callee]` (a Local channel pair `;1`/`;2`: Ringing,
  Wait, Answer, Wait, Hangup; or Busy / Congestion), driven by a `CallPlan` (behaviour.py);
  other technologies (`PJSIP/...`) are one channel, as a trunk would give;
- the answered call: the dialplan file is interpreted (dialplan.py), so the sandbox runs the
  same `[dialer-outbound]` we ship (or the reference's `[dialer-connect]`), application by
  application, with Newexten/VarSet/UserEvent as Asterisk emits them;
- agents: the reference's `[sim-agent]` members (`Local/700N@sim-agent/n`, device state
  `Custom:700N`) with talk and wrap-up times from an `AgentProfile`.

Event order within a call follows the reference transcript (tests/test_sandbox_reference.py
checks it); the interleaving between calls is whatever the scheduler gives, as on Asterisk.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dialer.sandbox import dialplan as dp
from dialer.sandbox.astdb import AstDB
from dialer.sandbox.behaviour import AgentPlan, CallPlan, Fate, reference_plan
from dialer.sandbox.events import CAUSE_TEXT, UP, Bridge, Channel, Fields, parse_callerid
from dialer.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

Emit = Callable[[Fields], None]

ORIGINATE_REASON = {Fate.BUSY: "5", Fate.CONGESTION: "8", Fate.NO_ANSWER: "3", Fate.FAILED: "0"}
MIN_TIMEOUT_MS = 1000


class CallEnded(Exception):
    """The caller channel is gone (the called person hung up): stop running the dialplan."""


@dataclass(eq=False)
class Member:
    """A queue member (a simulated human agent)."""

    queue: str
    number: int  # 7001...
    name: str
    login_time: int
    status: int = 1  # 1 NOT_INUSE, 2 INUSE (device state of Custom:700N)
    calls_taken: int = 0
    last_call: int = 0
    free_at: float = 0.0  # loop time when wrap-up ends
    busy: bool = False  # picked for a caller (ringing or talking): app_queue offers it no other call
    in_call: bool = False  # answered a caller and not hung up yet (app_queue's member->starttime: InCall)
    paused: bool = False

    @property
    def interface(self) -> str:
        return f"Local/{self.number}@sim-agent/n"

    @property
    def state_interface(self) -> str:
        return f"Custom:{self.number}"


@dataclass(eq=False)
class Waiter:
    call: Call
    joined: float
    position: int
    connected: asyncio.Future[Member]


@dataclass(eq=False)
class Queue:
    name: str
    members: list[Member]
    waiting: list[Waiter] = field(default_factory=list)
    completed: int = 0
    abandoned: int = 0
    holdtime: float = 0.0
    talktime: float = 0.0
    rr: int = 0  # rrmemory: next member to try


@dataclass(frozen=True)
class OriginateRequest:
    action_id: str
    channel: str
    context: str
    exten: str
    priority: str
    timeout_ms: int
    callerid: str
    variables: dict[str, str]


class Pbx:
    """One simulated Asterisk. `emit` receives every event; `reset()` is a restart (calls lost)."""

    def __init__(self, settings: SandboxSettings, emit: Emit) -> None:
        self.settings = settings
        self.emit_fields = emit
        # Each call draws from its own generator, seeded from (seed, originate number): a call's fate,
        # its agent's talk time and its ids depend on the seed and the order of the Originates only,
        # never on how the calls happened to interleave.
        self.base_seed = settings.seed if settings.seed is not None else random.SystemRandom().getrandbits(64)
        self.dialplan = dp.Dialplan()
        self.astdb = AstDB()  # kept across reset(): Asterisk's astdb.sqlite3 survives a restart
        for path in settings.dialplans:
            loaded = dp.load(path)
            self.dialplan.contexts.update(loaded.contexts)
        self.channels: dict[str, Channel] = {}
        self.calls: set[Call] = set()
        self.ai_in_use = 0
        # Asterisk shutting down (ast_begin_shutdown): no new channel can be allocated ("Refusing due to active
        # shutdown"), so a Dial() or a queue's call to an agent fails while the calls already up go on.
        self.refusing_channels = False
        self._seq = 0x20
        self._unique = 60
        self.originates = 0
        self._boot()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _boot(self) -> None:
        self.boot_monotonic = time.monotonic()
        self.boot_epoch = int(time.time())
        self.queues: dict[str, Queue] = {}
        self.reload_queues(self.settings.queues)

    def reload_queues(self, queues: Mapping[str, int]) -> None:
        """`queue reload all` after queues.conf changed (checked on the lab PBX): queues no longer configured are
        gone (a caller already waiting in one keeps waiting there), new ones appear, and a queue that stays keeps
        its members and their state, with members added or removed at the end to match the new count. Asterisk
        sends no event for any of it. Agents are numbered 7001, 7002 ... across queues in order, each named
        `Agent N` after its number, as the lab's queues.conf does."""
        kept = {name: q for name, q in self.queues.items() if name in queues}
        number = max((m.number for q in kept.values() for m in q.members), default=7000)
        self.queues = {}
        for name, count in queues.items():
            queue = kept.get(name) or Queue(name, [])
            del queue.members[count:]
            while len(queue.members) < count:
                number += 1
                queue.members.append(Member(name, number, f"Agent {number - 7000}", self.epoch()))
            self.queues[name] = queue

    def find_queue(self, name: str) -> Queue | None:
        """app_queue finds a queue by its name in any letter case (its container compares with strcasecmp); the
        queue keeps the name its queues.conf section has, and every event and listing reports that one."""
        wanted = name.strip().lower()
        return next((q for q in self.queues.values() if q.name.lower() == wanted), None)

    def reset(self) -> None:
        """Asterisk restarted: every call is gone without events, queues start empty."""
        for call in list(self.calls):
            call.kill()
        self.calls.clear()
        self.channels.clear()
        self.ai_in_use = 0
        self.refusing_channels = False
        self._boot()

    @property
    def uptime(self) -> int:
        return int(time.monotonic() - self.boot_monotonic)

    def now(self) -> float:
        """Simulated seconds since boot."""
        return (time.monotonic() - self.boot_monotonic) / self.settings.time_scale

    def epoch(self) -> int:
        return self.boot_epoch + int(self.now())

    async def sleep(self, simulated: float) -> None:
        await asyncio.sleep(self.settings.scaled(simulated))

    async def sleep_until(self, simulated_instant: float) -> None:
        """Sleep until `now()` reaches this instant: a party's steps timed from one base do not drift apart when
        each sleep of a loaded machine overruns."""
        late = self.settings.scaled(simulated_instant - self.now())
        if late > 0:
            await asyncio.sleep(late)

    # -- ids and events -------------------------------------------------------------------------------------

    def next_uniqueid(self) -> str:
        self._unique += 1
        return f"{self.epoch()}.{self._unique}"

    def next_seq(self) -> str:
        self._seq += 1
        return f"{self._seq:08x}"

    def emit(self, event: str, privilege: str, fields: Fields) -> None:
        self.emit_fields([("Event", event), ("Privilege", f"{privilege},all"), *fields])

    def snap(self, chan: Channel, prefix: str = "") -> Fields:
        return chan.snapshot(self.settings.channelvars, prefix)

    def chan_event(self, event: str, chan: Channel, extra: Fields = (), privilege: str = "call") -> None:
        self.emit(event, privilege, [*self.snap(chan), *extra])

    def new_channel(self, name: str, linkedid: str | None, context: str, exten: str, state: int) -> Channel:
        uid = self.next_uniqueid()
        chan = Channel(name, uid, linkedid or uid, context, exten, state=state, created=self.now())
        self.channels[name] = chan
        self.chan_event("Newchannel", chan)
        return chan

    def newexten(
        self,
        chan: Channel,
        app: str,
        data: str,
        context: str | None = None,
        exten: str | None = None,
        priority: int | None = None,
    ) -> None:
        if context is not None:
            chan.context = context
        if exten is not None:
            chan.exten = exten
        if priority is not None:
            chan.priority = priority
        chan.application, chan.appdata = app, data
        self.chan_event(
            "Newexten", chan, [("Extension", chan.exten), ("Application", app), ("AppData", data)], "dialplan"
        )

    def varset(self, chan: Channel, name: str, value: str) -> None:
        chan.variables[name] = value
        self.chan_event("VarSet", chan, [("Variable", name), ("Value", value)], "dialplan")

    def newstate(self, chan: Channel, state: int) -> None:
        chan.state = state
        self.chan_event("Newstate", chan)

    def hangup_request(self, chan: Channel, cause: int, soft: bool = False) -> None:
        self.chan_event("SoftHangupRequest" if soft else "HangupRequest", chan, [("Cause", str(cause))])

    def hangup(self, chan: Channel, cause: int) -> None:
        if not chan.alive:
            return
        if chan.in_dialplan:
            chan.in_dialplan = False
            self.run_h(chan)  # before the Hangup event, as Asterisk's __ast_pbx_run does before ast_hangup
        chan.alive = False
        self.channels.pop(chan.name, None)
        self.chan_event("Hangup", chan, [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))])

    def run_h(self, chan: Channel) -> None:
        """The h extension of the channel's current context, run when a channel that was in the dialplan hangs up
        (pbx.c: after the PBX loop ends, before the channel is destroyed). The channel is hung up already, so only
        applications that return at once run here: Set (variables, DB()), NoOp, Goto and GotoIf within h."""
        steps = self.dialplan.extension(chan.context, "h")
        index, hops = 0, 0
        while steps and index < len(steps) and hops < 100:
            hops += 1
            step = steps[index]
            chan.exten, chan.priority = "h", step.priority
            variables = {**chan.variables, "EXTEN": "h", "CONTEXT": chan.context, "EPOCH": str(self.epoch())}
            args = dp.substitute(step.args, variables, {"DB": self.astdb.read_function,
                                                        "DB_DELETE": self.astdb.delete_function})
            self.newexten(chan, step.app, args)
            app = step.app.lower()
            target: str | None = None
            if app == "set":
                var, _, value = args.partition("=")
                var = var.strip()
                if var.upper().startswith("DB(") and var.endswith(")"):
                    family, key = self.astdb.split(var[3:-1])
                    if not self.astdb.put(family, key, value):
                        log.warning("sandbox: DB(%s) not written (family and key too long)", var[3:-1])
                else:
                    self.varset(chan, var, value)
            elif app == "goto":
                target = args
            elif app == "gotoif":
                target = dp.gotoif_target(args)
            elif app == "hangup":
                return
            elif app not in ("noop", "verbose", "log"):
                log.warning("sandbox: application %s in an h extension is not simulated; skipped", step.app)
            if target is None:
                index += 1
                continue
            found = self.dialplan.find(chan.context, "h", dp.goto_target(target)[2])
            if found is None:
                log.warning("sandbox: Goto target %s not found in h@%s", target, chan.context)
                return
            index = found[1]

    def device_state(self, device: str, state: str) -> None:
        self.emit("DeviceStateChange", "call", [("Device", device), ("State", state)])

    def dial_event(self, event: str, dest: Channel, caller: Channel | None, extra: Fields) -> None:
        fields: Fields = [*(self.snap(caller) if caller else []), *self.snap(dest, "Dest"), *extra]
        self.emit(event, "call", fields)

    # -- actions --------------------------------------------------------------------------------------------

    def originate(self, req: OriginateRequest) -> None:
        self.originates += 1
        call = Call(self, req, random.Random(f"{self.base_seed}:{self.originates}"))
        self.calls.add(call)
        call.start()

    def calls_up(self) -> int:
        """Calls whose originated channel is up or about to be, as Asterisk's channel list counts them. A call
        whose channel has hung up can stay in `calls` a moment longer (its task ends after the Hangup event), and
        a dialer may already have placed the next call on that event."""
        return sum(1 for call in self.calls if call.one is None or call.one.alive)

    def find_call(self, channel_name: str) -> Call | None:
        chan = self.channels.get(channel_name)
        if chan is None:
            return None
        for call in self.calls:
            if chan in call.all_channels():
                return call
        return None

    def hangup_channel(self, channel_name: str, cause: int = 16) -> bool:
        call = self.find_call(channel_name)
        if call is None:
            return False
        call.request_hangup(cause)
        return True

    # -- queues ---------------------------------------------------------------------------------------------

    def available(self, queue: Queue) -> list[Member]:
        """Members app_queue would offer a caller to now: free, not paused, past their wrap-up."""
        loop_now = asyncio.get_running_loop().time()
        return [m for m in queue.members if not m.busy and not m.paused and m.free_at <= loop_now]

    @staticmethod
    def reported_available(queue: Queue) -> int:
        """QueueSummary's `Available` as Asterisk 22 counts it (app_queue.c, manager_queues_summary): members whose
        device state is NOT_INUSE (or UNKNOWN) and who are not paused. Wrap-up is never looked at: a member in
        wrap-up counts as available for the whole wrapuptime (seen on the real PBX, issue 14)."""
        return sum(1 for m in queue.members if m.status == 1 and not m.paused)

    def member_status_event(self, member: Member) -> None:
        self.emit(
            "QueueMemberStatus",
            "agent",
            [
                ("Queue", member.queue),
                ("MemberName", member.name),
                ("Interface", member.interface),
                ("StateInterface", member.state_interface),
                ("Membership", "static"),
                ("Penalty", "0"),
                ("CallsTaken", str(member.calls_taken)),
                ("LastCall", str(member.last_call)),
                ("LastPause", "0"),
                ("LoginTime", str(member.login_time)),
                ("InCall", "1" if member.in_call else "0"),
                ("Status", str(member.status)),
                ("Paused", "1" if member.paused else "0"),
                ("PausedReason", ""),
                ("Ringinuse", "0"),
                ("Wrapuptime", "0"),
            ],
        )

    def dispatch(self, queue: Queue) -> None:
        """Offer waiting callers to free members (rrmemory), oldest caller first."""
        if self.refusing_channels:
            return  # no agent channel can be created: callers wait out their timeout (the abandon path)
        while queue.waiting:
            free = self.available(queue)
            if not free:
                # Wake up when the next wrap-up ends.
                loop = asyncio.get_running_loop()
                pending = [m.free_at for m in queue.members if not m.busy and not m.paused and m.free_at > loop.time()]
                if pending:
                    loop.call_at(min(pending) + 0.001, self.dispatch, queue)
                return
            n = len(queue.members)
            member = next(
                queue.members[(queue.rr + i) % n] for i in range(n) if queue.members[(queue.rr + i) % n] in free
            )
            queue.rr = (queue.members.index(member) + 1) % n
            waiter = queue.waiting.pop(0)
            member.busy = True
            if not waiter.connected.done():
                waiter.connected.set_result(member)
            else:
                member.busy = False

    def pause(self, interface: str, paused: bool, queue: str = "", reason: str = "") -> int:
        """QueuePause: pause or unpause the member with this interface in one queue (or every queue it is in, as
        Asterisk does without a queue); a QueueMemberPause event per member. Returns how many members matched."""
        found = 0
        for q in self.queues.values():
            if queue and q.name.lower() != queue.strip().lower():
                continue
            for member in q.members:
                if interface not in (member.interface, member.state_interface):
                    continue
                found += 1
                member.paused = paused
                fields = []
                captured: list[Fields] = []
                emit, self.emit_fields = self.emit_fields, captured.append
                try:
                    self.member_status_event(member)  # the same member fields, as app_queue's blob
                finally:
                    self.emit_fields = emit
                for name, value in captured[0]:
                    if name == "Event":
                        value = "QueueMemberPause"
                    elif name == "PausedReason":
                        value = reason if paused else ""
                    elif name == "LastPause" and paused:
                        value = str(self.epoch())
                    fields.append((name, value))
                self.emit_fields(fields)
                if not paused:
                    self.dispatch(q)
        return found

    def release(self, member: Member, wrapup: float) -> None:
        member.busy = False
        member.free_at = asyncio.get_running_loop().time() + self.settings.scaled(wrapup)
        queue = self.queues.get(member.queue)
        if queue is not None:
            if wrapup > 0:
                asyncio.get_running_loop().call_at(member.free_at + 0.001, self.dispatch, queue)
            self.dispatch(queue)


class Call:
    """One originated call: the far end, then our dialplan on the answered channel."""

    def __init__(self, pbx: Pbx, req: OriginateRequest, rng: random.Random) -> None:
        self.pbx = pbx
        self.req = req
        self.rng = rng
        self.number, self.target_context, self.tech = _parse_dial(req.channel)
        if pbx.settings.callee_mode == "profile":
            self.plan: CallPlan = pbx.settings.callee.sample(rng)
        else:
            self.plan = reference_plan(self.number)
        self.one: Channel | None = None  # the channel that runs our dialplan (Local ;1 or the trunk channel)
        self.two: Channel | None = None  # Local ;2: the simulated called party
        self.agent_one: Channel | None = None
        self.agent_two: Channel | None = None
        self.bridge: Bridge | None = None
        self.member: Member | None = None
        self.waiter: Waiter | None = None
        self.queue: Queue | None = None
        self.ai_session = False
        self.answered_at = 0.0
        self.dialed_at = 0.0
        self.callee_gone = asyncio.Event()
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        # The called person's keypress still to come, as a simulated instant. A wait that ends after it takes it,
        # even when the callee's own task has not run yet: a stalled event loop (a loaded CI machine) otherwise
        # let a 3 s announcement end before a keypress due half a second into it, and the opt-out was lost.
        self.press_due: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.side_tasks: list[asyncio.Task[None]] = []
        self.hangup_cause: int | None = None
        self.killed = False

    # -- plumbing -------------------------------------------------------------------------------------------

    def all_channels(self) -> list[Channel]:
        return [c for c in (self.one, self.two, self.agent_one, self.agent_two) if c is not None]

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def spawn(self, coro: object) -> None:
        self.side_tasks.append(asyncio.get_running_loop().create_task(coro))  # type: ignore[arg-type]

    def kill(self) -> None:
        """Restart: the call stops at once, its events go nowhere (the connections are closed first). Asterisk
        still hangs the channel up on its way down, which runs our dialplan's h extension: the call's outcome is
        in AstDB after the restart (seen on the lab: `core restart now` mid-call)."""
        self.killed = True
        for task in [self.task, *self.side_tasks]:
            if task is not None:
                task.cancel()
        one = self.one
        if one is not None and one.in_dialplan:
            if self.member is not None and self.bridge is not None:
                self._dialed_times()  # app_queue's end_bridge_callback: ANSWEREDTIME of the conversation
            elif self.waiter is not None:
                self._queue_stop_times(self.waiter.joined)  # left the queue without an agent: ANSWEREDTIME 0
            one.in_dialplan = False
            self.p.run_h(one)
        if self.member is not None:
            self.member.busy = self.member.in_call = False

    def request_hangup(self, cause: int) -> None:
        """AMI Hangup action on one of this call's channels."""
        if self.hangup_cause is None:
            self.hangup_cause = cause
            if self.task is not None:
                self.task.cancel()

    @property
    def p(self) -> Pbx:
        return self.pbx

    async def _run(self) -> None:
        try:
            answered = await self._dial()
            if answered:
                await self._dialplan()
        except CallEnded:
            pass
        except asyncio.CancelledError:
            if self.killed:
                raise
            self._teardown(self.hangup_cause or 16)
        except Exception:  # a sandbox bug must not kill the server: log it and drop the call
            log.exception("sandbox call %s failed", self.req.action_id)
            self._teardown(16)
        finally:
            for task in self.side_tasks:
                task.cancel()
            if not self.killed:
                self.p.calls.discard(self)
                if self.ai_session:
                    self.p.ai_in_use -= 1
                    self.ai_session = False

    # -- the far end ----------------------------------------------------------------------------------------

    def _originate_response(self, success: bool, reason: str) -> None:
        req = self.req
        num, name = parse_callerid(req.callerid)
        channel = self.one.name if success and self.one else req.channel
        uniqueid = self.one.uniqueid if success and self.one else "<unknown>"
        self.p.emit(
            "OriginateResponse",
            "call",
            [
                ("ActionID", req.action_id),
                ("Response", "Success" if success else "Failure"),
                ("Channel", channel),
                ("Context", req.context),
                ("Exten", req.exten),
                ("Reason", reason),
                ("Uniqueid", uniqueid),
                ("CallerIDNum", num),
                ("CallerIDName", name),
            ],
        )

    async def _dial(self) -> bool:
        p, plan, req = self.p, self.plan, self.req
        if plan.fate is Fate.FAILED:
            self._originate_response(False, ORIGINATE_REASON[Fate.FAILED])
            return False
        num, name = parse_callerid(req.callerid)
        local = self.tech == "Local"
        seq = p.next_seq()
        self.dialed_at = p.now()
        if local:
            base = f"Local/{self.number}@{self.target_context}-{seq}"
            one = p.new_channel(base + ";1", None, self.target_context, self.number, 0)
            two = p.new_channel(base + ";2", one.linkedid, self.target_context, self.number, 4)
            self.one, self.two = one, two
        else:
            endpoint = self.target_context or self.number
            one = p.new_channel(f"{self.tech}/{endpoint}-{seq}", None, "default", "s", 0)
            self.one = one
        p.newexten(one, "AppDial2", "(Outgoing Line)")
        for key, value in req.variables.items():
            p.varset(one, key, value)
        one.cid_num, one.cid_name = num, name
        p.chan_event("NewCallerid", one, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        one.conn_num, one.conn_name = num, name
        p.chan_event("NewConnectedLine", one)
        two = self.two
        if two is not None:
            for key, value in req.variables.items():
                p.varset(two, key, value)
            two.cid_num, two.cid_name = num, name
            p.chan_event("NewCallerid", two, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
            two.conn_num, two.conn_name = num, name
            p.chan_event("NewConnectedLine", two)
            p.emit(
                "LocalBridge",
                "call",
                [
                    *p.snap(one, "LocalOne"),
                    *p.snap(two, "LocalTwo"),
                    ("Context", two.context),
                    ("Exten", two.exten),
                    ("LocalOptimization", "Yes"),
                ],
            )
        p.dial_event("DialBegin", one, None, [("DialString", req.channel.partition("/")[2])])
        p.device_state(self._device(), "INUSE")

        if plan.fate in (Fate.BUSY, Fate.CONGESTION):
            await p.sleep(plan.ring_seconds)
            busy = plan.fate is Fate.BUSY
            app, state, cause = ("Busy", 7, 17) if busy else ("Congestion", 7, 34)
            far = two or one
            if two is not None:
                p.newexten(two, app, "3")
            p.newstate(far, state)
            self._originate_response(False, ORIGINATE_REASON[plan.fate])
            p.dial_event("DialEnd", one, None, [("DialStatus", "BUSY" if busy else "CONGESTION")])
            if two is not None:
                p.hangup_request(two, 0)
                p.hangup_request(two, 16, soft=True)
                p.hangup(two, cause)
                p.hangup(one, 0)
            else:
                p.hangup(one, cause)
            p.device_state(self._device(), "NOT_INUSE")
            return False

        # Ringing.
        if two is not None:
            p.newexten(two, "Ringing", "", priority=1)
        p.newstate(one, 5)
        timeout = max(req.timeout_ms, MIN_TIMEOUT_MS) / 1000.0
        ring = plan.ring_seconds if plan.fate is Fate.ANSWER else math.inf
        if two is not None:
            p.newexten(two, "Wait", _secs(min(ring, 60.0) if ring != math.inf else max(60.0, timeout)), priority=2)
        p.dial_event("DialState", one, None, [("DialStatus", "RINGING")])
        if ring >= timeout:
            await p.sleep(timeout)
            far = two or one
            if two is not None:
                p.hangup_request(two, 19)
            self._originate_response(False, ORIGINATE_REASON[Fate.NO_ANSWER])
            p.hangup(one, 19)
            if two is not None:
                p.hangup_request(two, 16, soft=True)
                p.hangup(far, 19)
            p.device_state(self._device(), "NOT_INUSE")
            return False

        await p.sleep(ring)
        if two is not None:
            p.newexten(two, "Answer", "", priority=3)
            p.newstate(two, UP)
        p.newstate(one, UP)
        p.dial_event("DialEnd", one, None, [("DialStatus", "ANSWER")])
        self.answered_at = p.now()
        self._originate_response(True, "4")
        p.device_state(self._device(), "INUSE")
        # Our dialplan now runs on `one`; the called party lives its own life.
        self.spawn(self._callee_side())
        return True

    def _device(self) -> str:
        return f"Local/{self.number}@{self.target_context}" if self.tech == "Local" else f"{self.tech}/{self.number}"

    async def _callee_side(self) -> None:
        """The person (or machine): presses the opt-out digit, hangs up after `stay_seconds`."""
        p, plan = self.p, self.plan
        answered = self.answered_at
        if plan.optout_after is not None and plan.optout_after < plan.stay_seconds:
            self.press_due = answered + max(0.5, plan.optout_after)
        await p.sleep_until(answered + 0.5)  # Answer() lets 500 ms of audio settle before the next priority
        if self.two is not None and self.two.alive:
            p.newexten(self.two, "Wait", _secs(plan.stay_seconds), priority=4)
        if self.press_due is not None:
            await p.sleep_until(self.press_due)
            self.press_due_now()
        await p.sleep_until(answered + max(0.5, plan.stay_seconds))
        self.callee_gone.set()

    def press_due_now(self) -> str | None:
        """Press the opt-out digit the callee's plan has due (once); returns it, or None."""
        if self.press_due is None:
            return None
        self.press_due = None
        digit = (self.one.variables.get("DIALER_OPTOUT_DIGIT", "9") if self.one else "9") or "9"
        self.press(digit)
        return digit

    def digit_due_by(self, instant: float) -> str | None:
        """A wait listening for digits ends at `instant`: the keypress due by then, taken from the queue."""
        if self.press_due is not None and self.press_due <= instant:
            self.press_due_now()
        try:
            return self.dtmf.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def press(self, digit: str) -> None:
        one = self.one
        if one is None or not one.alive:
            return
        self.p.chan_event("DTMFBegin", one, [("Digit", digit), ("Direction", "Received")], "dtmf")
        self.p.chan_event("DTMFEnd", one, [("Digit", digit), ("DurationMs", "120"), ("Direction", "Received")], "dtmf")
        self.dtmf.put_nowait(digit)

    # -- waiting with interruptions -------------------------------------------------------------------------

    async def wait(self, simulated: float, digits: bool) -> str | None:
        """Wait on the answered channel. Returns a digit if one interrupts, None when the time is over;
        raises CallEnded when the called person hangs up first."""
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self.callee_gone.wait())]
        if digits:
            waits.append(asyncio.ensure_future(self.dtmf.get()))
        timeout = self.p.settings.scaled(simulated)
        ends = self.p.now() + simulated
        try:
            done, _ = await asyncio.wait(
                waits, timeout=None if math.isinf(timeout) else timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                if not w.done():
                    w.cancel()
        if len(waits) > 1 and waits[1] in done:
            return str(waits[1].result())
        if digits and (digit := self.digit_due_by(ends)) is not None:
            return digit
        if waits[0] in done:
            self._callee_hangup_in_dialplan()
            raise CallEnded
        return None

    def _callee_hangup_in_dialplan(self, timed: bool = True) -> None:
        """The called person hung up while the dialplan (not a bridge) had the channel (`timed`: set the
        Dial-style timing variables; app_queue has set its own when the hang-up came in the queue)."""
        p, one, two = self.p, self.one, self.two
        assert one is not None
        if two is not None:
            p.newexten(two, "Hangup", "", priority=5)
            p.hangup_request(two, 16, soft=True)
            p.hangup_request(one, 16)
            p.hangup(two, 16)
        else:
            p.hangup_request(one, 16)
        if timed:
            self._dialed_times()
        p.hangup_request(one, 16, soft=True)
        p.hangup(one, 16)
        p.device_state(self._device(), "NOT_INUSE")

    def _dialed_times(self) -> None:
        p, one = self.p, self.one
        assert one is not None
        answered = p.now() - self.answered_at if self.answered_at else 0.0
        dialed = p.now() - self.dialed_at
        p.varset(one, "ANSWEREDTIME", str(int(answered)))
        p.varset(one, "ANSWEREDTIME_MS", str(int(answered * 1000)))
        p.varset(one, "DIALEDTIME", str(int(dialed)))
        p.varset(one, "DIALEDTIME_MS", str(int(dialed * 1000)))

    def _teardown(self, cause: int) -> None:
        """Hang up whatever is left (AMI Hangup action): agent legs, then the call's own channels.
        Nothing may leak: a member picked for this caller is released, a bridge is left and destroyed."""
        p = self.p
        waiter = self.waiter
        if waiter is not None and self.queue is not None:
            if waiter.connected.done() and not waiter.connected.cancelled() and self.member is None:
                # An agent had just been picked for this caller: give them back.
                waiter.connected.result().busy = False
                p.dispatch(self.queue)
            else:
                waiter.connected.cancel()
            self._leave_queue(abandon=True)
        bridged_to_member = self.bridge is not None and self.agent_one is not None and self.member is not None
        if bridged_to_member and self.one is not None and self.queue is not None and self.member is not None:
            self._complete(self.queue, self.member, int(p.now() - self.answered_at), "caller")
        if self.bridge is not None:
            for chan in list(self.bridge.channels):
                self._leave_bridge(chan)
            self._destroy_bridge()
        for chan in (self.agent_one, self.agent_two):
            if chan is not None and chan.alive:
                p.hangup_request(chan, cause)
                p.hangup(chan, cause)
        if self.member is not None:
            self._member_done(talk_reason="caller")
        for chan in (self.one, self.two):
            if chan is not None and chan.alive:
                p.hangup_request(chan, cause)
                p.hangup(chan, cause)
        p.device_state(self._device(), "NOT_INUSE")

    # -- the dialplan ---------------------------------------------------------------------------------------

    async def _dialplan(self) -> None:
        p, one, req = self.p, self.one, self.req
        assert one is not None
        context, exten, index = req.context, req.exten, 0
        steps = p.dialplan.extension(context, exten)
        if not steps:
            log.warning("sandbox: no extension %s@%s in the loaded dialplan", exten, context)
            p.hangup_request(one, 16, soft=True)
            p.hangup(one, 1)
            return
        if req.priority.isdigit():
            index = next((i for i, s in enumerate(steps) if s.priority == int(req.priority)), 0)
        one.in_dialplan = True
        hops = 0
        while True:
            hops += 1
            if hops > 500:  # a dialplan loop: Asterisk would spin too; we stop and hang up
                raise RuntimeError(f"dialplan loop in {context}")
            steps = p.dialplan.extension(context, exten)
            if not steps or index >= len(steps):
                self._dialplan_end()
                return
            step = steps[index]
            one.context, one.exten, one.priority = context, exten, step.priority
            variables = {**one.variables, "EXTEN": exten, "CONTEXT": context, "EPOCH": str(p.epoch())}
            args = dp.substitute(step.args, variables, {"DB": p.astdb.read_function,
                                                        "DB_DELETE": p.astdb.delete_function})
            p.newexten(one, step.app, args)
            result = await self._app(step.app, args)
            if result is None:
                index += 1
                continue
            if result == "HANGUP":
                return
            if isinstance(result, tuple):  # ("exten", digit or "t"): go to that extension in this context
                target = result[1]
                if p.dialplan.extension(context, target) is not None:
                    exten, index = target, 0
                elif p.dialplan.extension(context, "i") is not None:
                    exten, index = "i", 0
                else:
                    index += 1  # no handler: carry on
                continue
            ctx, ext, label = dp.goto_target(result)
            context = ctx or context
            exten = ext or exten
            found = p.dialplan.find(context, exten, label)
            if found is None:
                log.warning("sandbox: Goto target %s not found in %s", result, context)
                self._dialplan_end()
                return
            exten, index = found

    def _dialplan_end(self) -> None:
        """Falling off the end of the dialplan: Asterisk hangs the channel up."""
        self._hangup_from_dialplan()

    def _hangup_from_dialplan(self) -> None:
        p, one, two = self.p, self.one, self.two
        assert one is not None
        p.hangup_request(one, 16, soft=True)
        if two is not None and two.alive:
            p.hangup_request(two, 16)
        p.hangup(one, 16)
        if two is not None and two.alive:
            p.hangup_request(two, 16, soft=True)
            p.hangup(two, 16)
        p.device_state(self._device(), "NOT_INUSE")

    async def _app(self, app: str, args: str) -> str | tuple[str, str] | None:
        """Run one application. Returns None (next priority), a Goto target, ("digit", d) or "HANGUP"."""
        p, one = self.p, self.one
        assert one is not None
        name = app.lower()
        if name in ("noop", "verbose", "log", "progress", "ringing", "answer"):
            return None
        if name == "set":
            var, _, value = args.partition("=")
            var = var.strip()
            if var.upper().startswith("DB(") and var.endswith(")"):
                # A function write, not a variable: Asterisk raises no VarSet for it.
                family, key = p.astdb.split(var[3:-1])
                if not p.astdb.put(family, key, value):
                    log.warning("sandbox: DB(%s) not written (family and key too long)", var[3:-1])
                return None
            p.varset(one, var, value)
            return None
        if name == "goto":
            return args
        if name == "gotoif":
            return dp.gotoif_target(args)
        if name == "userevent":
            parts = dp.split_args(args)
            fields: Fields = [("UserEvent", parts[0])]
            for part in parts[1:]:
                key, sep, value = part.partition(":")
                if sep:
                    fields.append((key.strip(), value.strip()))
            p.chan_event("UserEvent", one, fields, "user")
            return None
        if name == "hangup":
            self._hangup_from_dialplan()
            return "HANGUP"
        if name in ("background", "playback"):
            digit = await self.wait(_sound_seconds(args), digits=name == "background")
            return ("exten", digit) if digit else None
        if name == "wait":
            await self.wait(_float(args, 1.0), digits=False)
            return None
        if name == "waitexten":
            digit = await self.wait(_float(args, 5.0), digits=True)
            return ("exten", digit or "t")
        if name == "amd":
            return await self._amd()
        if name == "queue":
            return await self._queue(args)
        if name == "dial":
            return await self._dial_ai(args)
        log.warning("sandbox: application %s is not simulated; skipped", app)
        return None

    async def _amd(self) -> None:
        p, one = self.p, self.one
        assert one is not None
        machine = self.plan.machine
        await self.wait(p.settings.amd_machine_seconds if machine else p.settings.amd_human_seconds, digits=False)
        status, cause = ("MACHINE", "LONGGREETING-1600-1500") if machine else ("HUMAN", "HUMAN-320-1000")
        p.varset(one, "AMDSTATUS", status)
        p.varset(one, "AMDCAUSE", cause)
        return None

    # -- app_queue ------------------------------------------------------------------------------------------

    async def _queue(self, args: str) -> str | tuple[str, str] | None:
        p, one = self.p, self.one
        assert one is not None
        parts = dp.split_args(args)
        queue = p.find_queue(parts[0])
        timeout = _float(parts[4] if len(parts) > 4 else "", math.inf) or math.inf
        for var in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS", "QUEUEWAIT", "QUEUEWAIT_MS"):
            p.varset(one, var, "")
        if queue is None:
            log.warning("sandbox: unknown queue %r", parts[0])
            p.varset(one, "QUEUESTATUS", "UNKNOWN")
            return None
        loop = asyncio.get_running_loop()
        self.queue = queue
        waiter = Waiter(self, p.now(), len(queue.waiting) + 1, loop.create_future())
        self.waiter = waiter
        queue.waiting.append(waiter)
        p.chan_event(
            "QueueCallerJoin",
            one,
            [("Queue", queue.name), ("Position", str(waiter.position)), ("Count", str(len(queue.waiting)))],
            "agent",
        )
        p.dispatch(queue)
        gone = asyncio.ensure_future(self.callee_gone.wait())
        key = asyncio.ensure_future(self.dtmf.get())
        wall = p.settings.scaled(timeout)
        ends = p.now() + timeout
        try:
            done, _ = await asyncio.wait(
                [waiter.connected, gone, key],
                timeout=None if math.isinf(wall) else wall,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for f in (gone, key):
                if not f.done():
                    f.cancel()
        if waiter.connected in done:
            member = waiter.connected.result()
            return await self._connect_member(queue, member)
        waiter.connected.cancel()
        digit = str(key.result()) if key in done else self.digit_due_by(ends)
        if digit is not None:
            self._leave_queue(abandon=False)
            self._queue_stop_times(waiter.joined)
            p.varset(one, "QUEUESTATUS", "CONTINUE")
            return ("exten", digit)
        if gone in done:
            self._leave_queue(abandon=True)
            self._queue_stop_times(waiter.joined)
            self._callee_hangup_in_dialplan(timed=False)
            raise CallEnded
        # Timeout: app_queue records the caller as abandoned, then leaves the queue.
        self._leave_queue(abandon=True)
        self._queue_stop_times(waiter.joined)
        p.varset(one, "QUEUESTATUS", "TIMEOUT")
        return None

    def _queue_stop_times(self, joined: float) -> None:
        """app_queue's exit without an agent (queue_exec's `stop:`): QUEUEWAIT and DIALEDTIME when still empty,
        ANSWEREDTIME 0 (the call never reached an agent; the dialplan's h extension relies on it)."""
        p, one = self.p, self.one
        assert one is not None
        values = {"QUEUEWAIT": p.now() - joined, "DIALEDTIME": p.now() - self.dialed_at, "ANSWEREDTIME": 0.0}
        for name, seconds in values.items():
            if name == "ANSWEREDTIME" or not one.variables.get(name):
                p.varset(one, name, str(int(seconds)))
                p.varset(one, f"{name}_MS", str(int(seconds * 1000)))

    def _leave_queue(self, abandon: bool) -> None:
        p, one, queue, waiter = self.p, self.one, self.queue, self.waiter
        assert one is not None and queue is not None and waiter is not None
        position = queue.waiting.index(waiter) + 1 if waiter in queue.waiting else 1
        if waiter in queue.waiting:
            queue.waiting.remove(waiter)
        if abandon:
            queue.abandoned += 1
            p.chan_event(
                "QueueCallerAbandon",
                one,
                [
                    ("Queue", queue.name),
                    ("Position", str(position)),
                    ("OriginalPosition", str(waiter.position)),
                    ("HoldTime", str(int(p.now() - waiter.joined))),
                ],
                "agent",
            )
        p.chan_event(
            "QueueCallerLeave",
            one,
            [("Queue", queue.name), ("Count", str(len(queue.waiting))), ("Position", str(position))],
            "agent",
        )
        self.waiter = None

    def _member_fields(self, queue: Queue, member: Member) -> Fields:
        return [("Queue", queue.name), ("Interface", member.interface), ("MemberName", member.name)]

    async def _connect_member(self, queue: Queue, member: Member) -> str | None:
        p, one = self.p, self.one
        assert one is not None
        self.member = member
        agent_plan: AgentPlan = p.settings.agents.sample(self.rng)
        seq = p.next_seq()
        base = f"Local/{member.number}@sim-agent-{seq}"
        a1 = p.new_channel(base + ";1", one.linkedid, "sim-agent", str(member.number), 0)
        a2 = p.new_channel(base + ";2", one.linkedid, "sim-agent", str(member.number), 4)
        self.agent_one, self.agent_two = a1, a2
        p.newexten(a1, "AppQueue", "(Outgoing Line)")
        a1.cid_num, a1.cid_name = one.cid_num, one.cid_name
        p.chan_event("NewCallerid", a1, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        p.varset(a1, "DIALEDPEERNUMBER", f"{member.number}@sim-agent/n")
        p.varset(a2, "DIALEDPEERNUMBER", f"{member.number}@sim-agent/n")
        a2.cid_num, a2.cid_name = one.cid_num, one.cid_name
        p.chan_event("NewCallerid", a2, [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        a2.conn_num, a2.conn_name = one.cid_num, one.cid_name
        p.chan_event("NewConnectedLine", a2)
        p.emit(
            "LocalBridge",
            "call",
            [
                *p.snap(a1, "LocalOne"),
                *p.snap(a2, "LocalTwo"),
                ("Context", "sim-agent"),
                ("Exten", str(member.number)),
                ("LocalOptimization", "Yes"),
            ],
        )
        p.emit("AgentCalled", "agent", [*p.snap(one), *p.snap(a1, "Dest"), *self._member_fields(queue, member)])
        p.dial_event("DialBegin", a1, one, [("DialString", member.interface)])
        p.newexten(a2, "Set", f"AG={member.number}")
        p.varset(a2, "AG", str(member.number))
        p.newexten(a2, "Set", f"DEVICE_STATE(Custom:{member.number})=INUSE", priority=2)
        p.device_state(member.state_interface, "INUSE")
        member.status = 2
        p.member_status_event(member)
        ring_wall = p.settings.scaled(agent_plan.ring_seconds)
        if ring_wall > 0:
            await self.wait(agent_plan.ring_seconds, digits=False)
        p.newexten(a2, "Answer", "", priority=3)
        member.in_call = True
        p.newstate(a2, UP)
        p.newstate(a1, UP)
        a1.exten, a1.priority = "s", 1
        p.newexten(a1, "AppQueue", "(Outgoing Line)")
        a1.conn_num, a1.conn_name = one.cid_num, one.cid_name
        p.chan_event("NewConnectedLine", a1)
        p.dial_event("DialEnd", a1, one, [("DialStatus", "ANSWER")])
        hold = p.now() - (self.waiter.joined if self.waiter else p.now())
        self._leave_queue(abandon=False)
        p.varset(one, "QUEUEPOSITION", "1")
        p.varset(one, "QUEUEWAIT", str(int(hold)))
        p.varset(one, "QUEUEWAIT_MS", str(int(hold * 1000)))
        p.emit(
            "AgentConnect",
            "agent",
            [
                *p.snap(one),
                *p.snap(a1, "Dest"),
                *self._member_fields(queue, member),
                ("HoldTime", str(int(hold))),
                ("RingTime", str(int(agent_plan.ring_seconds))),
            ],
        )
        self._enter_bridge(a1, one)
        queue.holdtime = hold
        talk_started = p.now()
        self.spawn(self._agent_wait_line(a2, agent_plan.talk_seconds, member.number))
        outcome = await self._bridged(agent_plan.talk_seconds)
        talk = int(p.now() - talk_started)
        queue.completed += 1
        queue.talktime = talk
        if outcome == "caller":
            self._caller_left_bridge(queue, member, talk, agent_plan)
        else:
            self._agent_left_bridge(queue, member, talk, agent_plan)
        return "HANGUP"

    async def _agent_wait_line(self, a2: Channel, talk: float, number: int) -> None:
        await self.p.sleep(0.5)
        if a2.alive:
            self.p.newexten(a2, "Wait", str(int(talk)), priority=4)

    def _enter_bridge(self, agent: Channel, caller: Channel) -> None:
        p = self.p
        bridge = Bridge(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
        self.bridge = bridge
        p.emit("BridgeCreate", "call", bridge.fields())
        for chan in (agent, caller):
            bridge.channels.append(chan)
            chan.bridge_id = bridge.uniqueid
            p.emit("BridgeEnter", "call", [*bridge.fields(), *p.snap(chan)])
        p.varset(agent, "BRIDGEPEER", caller.name)
        p.varset(caller, "BRIDGEPEER", agent.name)

    async def _bridged(self, talk_seconds: float) -> str:
        """Wait until the agent or the called person hangs up. Digits go to the agent (ignored here)."""
        gone = asyncio.ensure_future(self.callee_gone.wait())
        try:
            done, _ = await asyncio.wait([gone], timeout=self.p.settings.scaled(talk_seconds))
        finally:
            if not gone.done():
                gone.cancel()
        return "caller" if gone in done else "agent"

    def _destroy_bridge(self) -> None:
        if self.bridge is not None:
            self.p.emit("BridgeDestroy", "call", self.bridge.fields())
            self.bridge = None

    def _leave_bridge(self, chan: Channel) -> None:
        p, bridge = self.p, self.bridge
        assert bridge is not None
        if chan in bridge.channels:
            bridge.channels.remove(chan)
        chan.bridge_id = ""
        p.emit("BridgeLeave", "call", [*bridge.fields(), *p.snap(chan)])

    def _complete(self, queue: Queue, member: Member, talk: int, reason: str) -> None:
        p, one, a1 = self.p, self.one, self.agent_one
        assert one is not None and a1 is not None
        bare = p.settings.bare_agent_complete
        if reason == "caller" and bare > 0 and self.rng.random() < bare:
            # Real Asterisk 22, caller hung up first: the AgentComplete sometimes carries no channel fields at all
            # (the caller's snapshot is already gone), only the member and the times (the lab, issue 14).
            times: Fields = [("HoldTime", str(int(queue.holdtime))), ("TalkTime", str(talk)), ("Reason", reason)]
            p.emit("AgentComplete", "agent", [*self._member_fields(queue, member), *times])
            return
        p.emit(
            "AgentComplete",
            "agent",
            [
                *p.snap(one),
                *p.snap(a1, "Dest"),
                *self._member_fields(queue, member),
                ("HoldTime", str(int(queue.holdtime))),
                ("TalkTime", str(talk)),
                ("Reason", reason),
            ],
        )

    def _member_done(self, talk_reason: str, wrapup: float = 0.0) -> None:
        p, member = self.p, self.member
        if member is None:
            return
        self.member = None
        member.in_call = False
        member.calls_taken += 1
        member.last_call = p.epoch()
        member.status = 1
        p.device_state(member.state_interface, "NOT_INUSE")
        p.member_status_event(member)
        p.release(member, wrapup)

    def _caller_left_bridge(self, queue: Queue, member: Member, talk: int, plan: AgentPlan) -> None:
        p, one, two, a1, a2 = self.p, self.one, self.two, self.agent_one, self.agent_two
        assert one is not None and a1 is not None and a2 is not None
        if two is not None:
            p.newexten(two, "Hangup", "", priority=5)
            p.hangup_request(two, 16, soft=True)
        p.hangup_request(one, 16)
        p.varset(one, "BRIDGEPEER", "")
        if two is not None:
            p.hangup(two, 16)
        self._complete(queue, member, talk, "caller")
        p.varset(a1, "BRIDGEPEER", "")
        self._leave_bridge(one)
        self._dialed_times()
        p.hangup_request(one, 16, soft=True)
        p.hangup(one, 16)
        self._leave_bridge(a1)
        self._destroy_bridge()
        p.hangup_request(a2, 16)
        p.hangup(a1, 16)
        p.hangup_request(a2, 16, soft=True)
        p.newexten(a2, "Set", f"DEVICE_STATE(Custom:{member.number})=NOT_INUSE", exten="h", priority=1)
        self._member_done("caller", plan.wrapup_seconds)
        a2.priority = 2
        p.hangup(a2, 16)
        p.device_state(self._device(), "NOT_INUSE")

    def _agent_left_bridge(self, queue: Queue, member: Member, talk: int, plan: AgentPlan) -> None:
        p, one, two, a1, a2 = self.p, self.one, self.two, self.agent_one, self.agent_two
        assert one is not None and a1 is not None and a2 is not None
        p.newexten(a2, "Hangup", "", priority=5)
        p.hangup_request(a2, 16, soft=True)
        p.newexten(a2, "Set", f"DEVICE_STATE(Custom:{member.number})=NOT_INUSE", exten="h", priority=1)
        p.hangup_request(a1, 16)
        self._member_done("agent", plan.wrapup_seconds)
        self._complete(queue, member, talk, "agent")
        a2.priority = 2
        p.hangup(a2, 16)
        p.varset(a1, "BRIDGEPEER", "")
        p.varset(one, "BRIDGEPEER", "")
        self._leave_bridge(a1)
        self._leave_bridge(one)
        self._destroy_bridge()
        self._dialed_times()
        p.hangup(a1, 16)
        p.hangup_request(one, 16, soft=True)
        if two is not None:
            p.hangup_request(two, 16)
        p.hangup(one, 16)
        if two is not None:
            p.hangup_request(two, 16, soft=True)
            p.hangup(two, 16)
        p.device_state(self._device(), "NOT_INUSE")

    # -- AI agents (Dial to DIALER_AI_ENDPOINT) -------------------------------------------------------------

    async def _dial_ai(self, args: str) -> str | None:
        p, one = self.p, self.one
        assert one is not None
        parts = dp.split_args(args)
        target = parts[0].strip()
        timeout = _float(parts[1] if len(parts) > 1 else "", math.inf) or math.inf
        if not target:
            p.varset(one, "DIALSTATUS", "CHANUNAVAIL")
            return None
        tech, _, rest = target.partition("/")
        if p.refusing_channels:  # channel.c: "Channel allocation failed: Refusing due to active shutdown"
            p.varset(one, "DIALSTATUS", "CHANUNAVAIL")
            return None
        seq = p.next_seq()
        a1 = p.new_channel(f"{tech}/{rest.split('@')[-1] or 'ai'}-{seq}", one.linkedid, "default", "s", 0)
        self.agent_one = a1
        p.newexten(a1, "AppDial", "(Outgoing Line)")
        p.dial_event("DialBegin", a1, one, [("DialString", rest)])
        if p.ai_in_use >= p.settings.ai_sessions:
            # Every AI session is taken: the endpoint answers busy at once.
            p.dial_event("DialEnd", a1, one, [("DialStatus", "BUSY")])
            p.hangup(a1, 17)
            self.agent_one = None
            p.varset(one, "DIALSTATUS", "BUSY")
            return None
        p.ai_in_use += 1
        self.ai_session = True
        plan = p.settings.ai_agents.sample(self.rng)
        if plan.ring_seconds >= timeout:
            await self.wait(timeout, digits=False)
            p.dial_event("DialEnd", a1, one, [("DialStatus", "NOANSWER")])
            p.hangup(a1, 19)
            self.agent_one = None
            p.varset(one, "DIALSTATUS", "NOANSWER")
            return None
        p.newstate(a1, 5)
        p.dial_event("DialState", a1, one, [("DialStatus", "RINGING")])
        await self.wait(plan.ring_seconds, digits=False)
        p.newstate(a1, UP)
        p.dial_event("DialEnd", a1, one, [("DialStatus", "ANSWER")])
        p.varset(one, "DIALSTATUS", "ANSWER")
        self._enter_bridge(a1, one)
        outcome = await self._bridged(plan.talk_seconds)
        p.varset(a1, "BRIDGEPEER", "")
        p.varset(one, "BRIDGEPEER", "")
        if outcome == "caller":
            two = self.two
            if two is not None:
                p.newexten(two, "Hangup", "", priority=5)
                p.hangup_request(two, 16, soft=True)
                p.hangup(two, 16)
            p.hangup_request(one, 16)
            self._leave_bridge(one)
            self._leave_bridge(a1)
            self._destroy_bridge()
            p.hangup_request(a1, 16)
            p.hangup(a1, 16)
            self._dialed_times()
            p.hangup(one, 16)
        else:
            p.hangup_request(a1, 16)
            self._leave_bridge(a1)
            self._leave_bridge(one)
            self._destroy_bridge()
            p.hangup(a1, 16)
            self._dialed_times()
            self._hangup_from_dialplan()
        self.agent_one = None
        p.ai_in_use -= 1
        self.ai_session = False
        if self.one is not None and self.one.alive:
            self._hangup_from_dialplan()
        p.device_state(self._device(), "NOT_INUSE")
        return "HANGUP"


def _parse_dial(channel: str) -> tuple[str, str, str]:
    """`Local/5550001@sim-callee` -> ("5550001", "sim-callee", "Local");
    `PJSIP/+33145678901@trunk` -> ("+33145678901", "trunk", "PJSIP")."""
    tech, _, rest = channel.partition("/")
    rest = rest.split("/")[0]  # drop Local channel options (/n)
    number, _, where = rest.partition("@")
    return number, where, tech or "Local"


def _secs(value: float) -> str:
    if math.isinf(value):
        return "60"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _float(text: str, default: float) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return default


def _sound_seconds(args: str) -> float:
    """How long a prompt plays. Sound files are not read: messages are 3 s, the information message 6 s."""
    name = dp.split_args(args)[0]
    if "info" in name:
        return 6.0
    if "optout" in name:
        return 2.0
    return 3.0
