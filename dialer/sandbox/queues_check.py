"""Checks of a queues.conf for the dialer's agent queues: the settings the 2-second rule and the opt-out key
depend on, which asterisklint does not look at (it reads dialplans only).

Why each one (app_queue, Asterisk 20/22):
- `retry`: Queue()'s timeout argument "is checked between each queues.conf timeout and retry cycle" (the
  application's documentation). While every agent is busy the caller waits `retry` seconds between checks, so
  the wait before our information message is up to `retry` seconds past DIALER_CONNECT_TIMEOUT. A value below
  1 (or none) is the default, 5 s: a 2 s rule becomes a 5 s wait. It must be exactly 1.
- `autofill`: without it (off in the reference Asterisk run, which did not set it) only the caller at the
  head of the queue is offered an agent; the others wait for their turn in 1 s steps even while agents are
  free (the reference run shows it: the second caller got its agent 1 s later), so with several answered
  calls at once the third misses a 2 s window. The sandbox PBX serves every waiting caller at once, which is
  `autofill = yes`.
- `timeoutpriority`: `conf` lets an agent's ring time (`timeout`, 15 s) outlast Queue()'s timeout; `app`
  (the default) clips it to what is left of the connect window.
- `context`: the one-digit exit that lets the opt-out key work while the caller waits for an agent.
- `joinempty` / `leavewhenempty`: a caller refused or removed when no agent is logged in would skip nothing
  (the dialplan goes on to the information message), but `leavewhenempty` may end the wait early on a
  member's state change; kept off so the behaviour is the one documented.
"""

from __future__ import annotations

DIALPLAN_CONTEXT = "dialer-outbound"


def parse_queues(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a queues.conf -> key -> values (a key may repeat: member). Comments and blanks ignored."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and "]" in line:
            name = line[1:line.index("]")].strip()
            current = sections.setdefault(name, {})
            continue
        if current is None:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        current.setdefault(key.strip().lower(), []).append(value.lstrip(">").strip())
    return sections


def _last(settings: dict[str, list[str]], key: str, default: str) -> str:
    """The value in force (the last one written), lower-cased."""
    return settings.get(key, [default])[-1].lower()


def check_queues(text: str, where: str = "queues.conf") -> list[str]:
    """Problems with the dialer's queues in a queues.conf ([general] is skipped), each naming queue and key."""
    problems = []
    for name, settings in parse_queues(text).items():
        if name.lower() == "general":
            continue
        retry = _last(settings, "retry", "")
        if retry != "1":
            problems.append(f"{where}: [{name}] retry = {retry or '(unset)'}: must be 1 (below 1 means 5 s; "
                            "Queue()'s connect timeout is only checked between retry cycles)")
        if _last(settings, "autofill", "no") not in ("yes", "true", "1", "on"):
            problems.append(f"{where}: [{name}] autofill must be yes (else callers behind the first wait in 1 s "
                            "steps with agents free)")
        if _last(settings, "timeoutpriority", "app") != "app":
            problems.append(f"{where}: [{name}] timeoutpriority must be app (an agent's ring would outlast "
                            "the connect timeout)")
        if _last(settings, "context", "") != DIALPLAN_CONTEXT:
            problems.append(f"{where}: [{name}] context must be {DIALPLAN_CONTEXT} (the opt-out key while waiting)")
        if _last(settings, "leavewhenempty", "no") not in ("no", "false", "0", "off"):
            problems.append(f"{where}: [{name}] leavewhenempty must be no")
    return problems
