"""Checks on our dialplan that a generic linter cannot make, because they are about OUR contract.

asterisklint (tests/test_dialplan_lint.py) checks Asterisk syntax, applications, balance and
goto targets with literal labels. This adds:
- every `Goto`/`GotoIf` target exists, including `Goto(s,${DIALER_STAGE})`, which is resolved
  against every value the dialplan `Set`s DIALER_STAGE to;
- every `UserEvent` is one of the contract's events and carries `CallID:` and `CampaignID:`;
- every `${DIALER_*}` variable read is either in the contract (CONTRACT_VARIABLES) or set here;
- applications are known ones; parentheses, brackets and braces balance on each line;
- each extension starts at priority 1 and its priorities follow without gaps.
"""

from __future__ import annotations

import itertools
import re

from dialer.sandbox import dialplan as dp

CONTRACT_VARIABLES = frozenset(
    {
        "DIALER_CALL_ID",
        "DIALER_CAMPAIGN_ID",
        "DIALER_TENANT_ID",
        "DIALER_AGENT_KIND",
        "DIALER_QUEUE",
        "DIALER_AI_ENDPOINT",
        "DIALER_AI_DISCLOSURE",
        "DIALER_RECORDING_NOTICE",
        "DIALER_OPTOUT_DIGIT",
        "DIALER_INFO_MESSAGE",
        "DIALER_AMD",
        "DIALER_CONNECT_TIMEOUT",
    }
)
CONTRACT_EVENTS = {
    "DialerConnected": (),
    "DialerAbandon": ("Reason",),
    "DialerOptOut": ("Digit",),
    "DialerMachine": ("AMDStatus", "AMDCause"),
}
# AstDB families the dialplan writes, and what the dialer reads from them (dialer/ami/astdb.py, outcomes.py): each
# is written with key ${DIALER_CALL_ID} and this value, before the UserEvent named here if any (so that the event,
# which is lost while AMI is down, is never the only record).
CONTRACT_ASTDB: dict[str, tuple[str, str | None]] = {
    "dialer_optout": ("${EPOCH},${DIALER_CAMPAIGN_ID},${DIALER_TENANT_ID}", "DialerOptOut"),
    "dialer_outcome": ("${EPOCH},${DIALER_CAMPAIGN_ID},${DIALER_TENANT_ID},${DIALER_OUTCOME}", None),
}
_DB_WRITE = re.compile(r"^DB\(([^/()]+)/([^()]*)\)$", re.IGNORECASE)
KNOWN_APPS = frozenset(
    app.lower()
    for app in (
        "AMD", "Answer", "Background", "Busy", "Congestion", "Dial", "Goto", "GotoIf", "Hangup", "Log", "NoOp",
        "Playback", "Progress", "Queue", "Ringing", "Set", "UserEvent", "Verbose", "Wait", "WaitExten", "Return",
        "Gosub", "GosubIf", "MixMonitor", "Read", "SayDigits",
    )
)  # fmt: skip

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _balanced(text: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = False
    for c in text:
        if c == '"':
            quote = not quote
        elif quote:
            continue
        elif c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack and not quote


def check(text: str, source: str = "<dialplan>") -> list[str]:
    """Problems found, as `source:line: message` strings (empty: all good)."""
    problems: list[str] = []
    try:
        plan = dp.parse(text, source)
    except dp.DialplanError as exc:
        return [str(exc)]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = dp.strip_comment(raw)
        if line.strip() and not _balanced(line):
            problems.append(f"{source}:{number}: unbalanced parentheses, brackets, braces or quotes")
    stage_values: set[str] = set()
    set_variables: set[str] = set()
    for steps_by_exten in plan.contexts.values():
        for steps in steps_by_exten.values():
            for step in steps:
                if step.app.lower() == "set":
                    name, _, value = step.args.partition("=")
                    set_variables.add(name.strip())
                    if name.strip() == "DIALER_STAGE":
                        stage_values.add(value.strip())
    for context, exts in plan.contexts.items():
        for exten, steps in exts.items():
            problems += _check_astdb(steps, source)
            where = f"{source}:{steps[0].line}"
            if steps[0].priority != 1:
                problems.append(f"{where}: extension {exten} in [{context}] does not start at priority 1")
            for a, b in itertools.pairwise(steps):
                if b.priority != a.priority + 1:
                    problems.append(f"{source}:{b.line}: priority {b.priority} of {exten} follows {a.priority}")
            for step in steps:
                problems += _check_step(plan, context, exten, step, stage_values, set_variables, source)
    return problems


def _check_astdb(steps: list[dp.Step], source: str) -> list[str]:
    """AstDB writes use a contract family, key and value; each contract event is preceded by its AstDB write."""
    out: list[str] = []
    written: set[str] = set()
    for step in steps:
        where = f"{source}:{step.line}"
        if step.app.lower() == "set":
            name, _, value = step.args.partition("=")
            match = _DB_WRITE.match(name.strip())
            if match:
                family, key = match.groups()
                if family not in CONTRACT_ASTDB:
                    out.append(f"{where}: AstDB family {family!r} is not in the event contract")
                    continue
                if key != "${DIALER_CALL_ID}" or value.strip() != CONTRACT_ASTDB[family][0]:
                    out.append(f"{where}: AstDB {family} must be written as {family}/${{DIALER_CALL_ID}}="
                               f"{CONTRACT_ASTDB[family][0]}")
                written.add(family)
        if step.app.lower() == "userevent":
            event = dp.split_args(step.args)[0].strip()
            for family, (_, after) in CONTRACT_ASTDB.items():
                if event == after and family not in written:
                    out.append(f"{where}: UserEvent {event} is not preceded by its AstDB write ({family})")
    return out


def _check_step(plan: dp.Dialplan, context: str, exten: str, step: dp.Step, stages: set[str],
                set_variables: set[str], source: str) -> list[str]:  # fmt: skip
    where = f"{source}:{step.line}"
    out: list[str] = []
    app = step.app.lower()
    if app not in KNOWN_APPS:
        out.append(f"{where}: unknown application {step.app!r}")
    for name in _VAR.findall(step.args):
        if name.startswith("DIALER_") and name not in CONTRACT_VARIABLES and name not in set_variables:
            out.append(f"{where}: variable {name} is neither in the dialer contract nor set in the dialplan")
    targets: list[str] = []
    if app == "goto":
        targets = [step.args]
    elif app == "gotoif":
        _, _, branches = step.args.partition("?")
        targets = [t for t in branches.split(":") if t.strip()]
    for target in targets:
        ctx, ext, label = dp.goto_target(target)
        ctx, ext = ctx or context, ext or exten
        labels = sorted(stages) if label == "${DIALER_STAGE}" else [label]
        for one in labels:
            if plan.find(ctx, ext, one) is None:
                out.append(f"{where}: goto target {ctx},{ext},{one} does not exist")
    if app == "userevent":
        parts = dp.split_args(step.args)
        name = parts[0].strip()
        keys = {p.partition(":")[0].strip() for p in parts[1:] if ":" in p}
        if name not in CONTRACT_EVENTS:
            out.append(f"{where}: UserEvent {name!r} is not in the event contract")
        else:
            missing = {"CallID", "CampaignID", *CONTRACT_EVENTS[name]} - keys
            if missing:
                out.append(f"{where}: UserEvent {name} lacks {', '.join(sorted(missing))}")
    return out
