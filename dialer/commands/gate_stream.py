"""`dialer gate check` at the gate's speed: stream the file, parse, evaluate and write in batches.

The answers are exactly those of the line-by-line path (dialer.commands.gate.check_lines, kept as the
reference and tested against this one on a mixed file): the same parser functions (rules.scenario) and the
same engine (rules.evaluate) decide every line. What changes is the cost around them:

- JSON is read with orjson, falling back to the standard parser for what orjson reads differently (an integer
  beyond 64 bits, NaN, an error's wording), so a line parses to the same value or fails with the same message;
- the parts of a scenario that repeat across a list (the campaign, a contact's number and address, instants,
  history entries, consents) are parsed once and reused: a cache hit returns the object the parser built for an
  equal input (keys include each value's type, so `1` and `true` never share an entry; failures are never cached);
- the engine's own caches (numbers, places, plans, location checks: the runtime's caches) stay warm because the
  process decides the whole file;
- answer lines are assembled from cached JSON fragments (a reason, the packs, the jurisdictions, an instant),
  each produced once by json.dumps exactly as the line-by-line path would, and written 2,000 lines at a time.

Memory stays flat: input is streamed line by line and every cache is bounded (cleared when full).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

import orjson

from rules import scenario as sc
from rules.engine import Prepared, decide, prepare
from rules.model import OUTCOMES, Attempt, Campaign, Contact, Decision, Facts, Reason
from rules.packs import PackSet

BATCH = 2000  # lines per write
CACHE_MAX = 50_000  # entries per cache; cleared when full (memory flat whatever the file's size)
# prepared (contact, campaign) pairs: a list's contacts times the campaigns asked about (each about 250 bytes)
PREPARED_MAX = 4 * CACHE_MAX


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(line: str) -> tuple[Any, bool]:
    """json.loads(line), faster: (the same value, or the same json.JSONDecodeError; whether orjson read it). Only
    what orjson read is keyed by orjson.dumps in the caches: the standard parser's extras (NaN, Infinity, an integer
    beyond 64 bits) would not survive that key (NaN and null both dump as null)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        # let the standard parser accept it (NaN, 1e400) or word the error as the reference path does
        return json.loads(line), False
    if data.__class__ is dict:
        # orjson reads an integer beyond 64 bits as a float. Only two fields could tell: the id (echoed) and the
        # postal code (whose error names an integer); when either is not a plain value, read the line again.
        scenario_id = data.get("id")
        if scenario_id is not None and scenario_id.__class__ not in _PLAIN:
            return json.loads(line), False
        contact = data.get("contact")
        if contact.__class__ is dict and contact.get("postal_code").__class__ is float:
            return json.loads(line), False
    return data, True


_PLAIN = (str, int, bool)
_key = orjson.dumps  # a cache key for a JSON value orjson read: equal keys, equal values (types included: 1, 1.0, true)


class _Memo:
    """A bounded cache of successful parses: key -> value."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def put(self, key: Any, value: Any) -> Any:
        if len(self.data) >= CACHE_MAX:
            self.data.clear()
        self.data[key] = value
        return value


class ScenarioReader:
    """rules.scenario.parse_scenario with its repeated parts memoized. Same results, same errors.

    The parts of a line orjson read are keyed by their orjson.dumps bytes (one C call, about three times cheaper
    than a tuple of items and value types, and exact: the bytes tell 1 from 1.0 from true, and nested values need no
    special case). A line the standard parser read (`keyed` False) is parsed without the caches."""

    def __init__(self) -> None:
        self.instants = _Memo()
        self.campaigns = _Memo()
        self.contacts = _Memo()
        self.attempts = _Memo()
        self.consents = _Memo()
        self.relationships = _Memo()
        self.lists = _Memo()
        self.copies = _Memo()
        self.keyed = True

    def _flat(self, memo: _Memo, parse: Any, v: Any) -> Any:
        if v.__class__ is dict and self.keyed:
            key = _key(v)
            found = memo.data.get(key)
            if found is None:
                found = memo.put(key, parse(v))
            return found
        return parse(v)

    def _copies(self, v: Any) -> dict[str, datetime]:
        return dict(self._flat(self.copies, sc._copies, v))  # Facts may be kept by a caller: never share a dict

    def _entries(self, memo: _Memo, parse: Any, items: list[Any], where: str, *extra: Any) -> tuple[Any, ...]:
        out = []
        data = memo.data
        keyed = self.keyed
        for i, item in enumerate(items):
            key = None
            if keyed and item.__class__ is dict:
                key = (_key(item), extra) if extra else _key(item)
                found = data.get(key)
                if found is not None:
                    out.append(found)
                    continue
            value = parse(item, f"{where}[{i}]", *extra)  # an error names the index: errors are never cached
            if key is not None:
                memo.put(key, value)
            out.append(value)
        return tuple(out)

    def _list(self, memo: _Memo, parse: Any, v: Any, where: str, *extra: Any) -> tuple[Any, ...]:
        if v.__class__ is list:
            return self._entries(memo, parse, v, where, *extra) if v else ()
        if v is None:
            return ()
        sc._list(v, where)  # raises: not a list
        return ()

    def _history(self, v: Any, default_campaign: str) -> tuple[Attempt, ...]:
        """The history's attempts. Each person's attempts are their own (a cache of them would miss), so the common
        shape is built directly, with the reference parser's checks; anything else goes through that parser, which
        then words the error."""
        if v.__class__ is not list:
            return self._list(self.attempts, sc._attempt, v, "history", default_campaign)
        out = []
        instants = self.instants.data
        for i, item in enumerate(v):
            if item.__class__ is dict and _ATTEMPT_FIELDS.issuperset(item):
                at = item.get("at")
                campaign = item.get("campaign", default_campaign)
                outcome = item.get("outcome")
                call_id = item.get("call_id")
                when = instants.get(at) if at.__class__ is str else None
                if (when is not None and campaign.__class__ is str and call_id is None
                        and (outcome is None or (outcome.__class__ is str and outcome in _OUTCOMES))):
                    out.append(Attempt(at=when, campaign=campaign, outcome=outcome or "unknown", call_id=None))
                    continue
            attempt = sc._attempt(item, f"history[{i}]", default_campaign)
            if item.get("at").__class__ is str:  # parsed: its instant is now known
                self.instants.put(item["at"], attempt.at)
            out.append(attempt)
        return tuple(out)

    def parse(self, data: Any, keyed: bool = True) -> tuple[Any, datetime, Contact, Campaign, Facts]:
        """parse_scenario(data) as (id, at, contact, campaign, facts), with the same checks in the same order (so
        the first error is the same). `keyed`: orjson read the line (see _loads)."""
        self.keyed = keyed
        if data.__class__ is not dict:
            sc._table(data, "scenario")  # raises
        if not _TOP_FIELDS.issuperset(data):
            raise sc.ScenarioError(f"{sorted(set(data) - sc.TOP_FIELDS)[0]}: unknown field")
        get = data.get
        campaign = self._flat(self.campaigns, sc._campaign, get("campaign"))
        consent = self._list(self.consents, sc._consent, get("consent"), "consent")
        relationships = self._list(self.relationships, sc._relationship, get("relationships"), "relationships")
        lists = self._flat(self.lists, sc._lists, get("lists"))
        copies = self._copies(get("registry_copies"))
        history = self._history(get("history"), campaign.id)
        if len(history) > 1:
            history = tuple(sorted(history, key=_attempt_at))
        facts = Facts(consent=consent, relationships=relationships, lists=lists, registry_copies=copies,
                      history=history)
        at = get("at")
        if at.__class__ is str:
            found = self.instants.data.get(at)
            if found is None:
                found = self.instants.put(at, sc._instant(at, "at"))
            at = found
        else:
            at = sc._instant(at, "at")
        return get("id"), at, self._flat(self.contacts, sc._contact, get("contact")), campaign, facts


_TOP_FIELDS = frozenset(sc.TOP_FIELDS)
_ATTEMPT_FIELDS = frozenset({"at", "campaign", "outcome", "call_id"})
_OUTCOMES = frozenset(OUTCOMES)


def _attempt_at(a: Any) -> datetime:
    return a.at


class AnswerWriter:
    """decision_json(...) serialized as the reference path does, from cached fragments."""

    def __init__(self) -> None:
        self.reasons = _Memo()
        self.instants = _Memo()
        self.packs = _Memo()
        self.places = _Memo()

    def _instant(self, value: datetime | None) -> str:
        if value is None:
            return "null"
        found = self.instants.data.get(value)
        if found is None:
            found = self.instants.put(value, _dumps(sc.iso(value)))
        return found

    def _reason(self, r: Reason) -> str:
        # keyed by its fields as a plain tuple: hashed and compared in C (a Reason's own __eq__ is Python code)
        key = (r.code, r.text, r.rule, r.source, r.until)
        found = self.reasons.data.get(key)
        if found is None:
            found = self.reasons.put(key, _dumps({"code": r.code, "text": r.text, "rule": r.rule, "source": r.source,
                                                  "until": sc.iso(r.until)}))
        return found

    @staticmethod
    def _id(value: Any) -> str:
        t = value.__class__
        if value is None:
            return "null"
        if t is int:
            return str(value)  # what json.dumps writes for an int, however large
        if t is str and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return _dumps(value)

    def line(self, decision: Decision, scenario_id: Any) -> str:
        # the engine hands out one tuple of pack references per plan and interval: found by identity (the entry
        # keeps the tuple alive, so its id is not reused while it is there)
        entry = self.packs.data.get(id(decision.packs))
        if entry is not None and entry[0] is decision.packs:
            packs = entry[1]
        else:
            packs = self.packs.put(id(decision.packs), (decision.packs, _dumps([{"id": p.id, "version": p.version}
                                                                               for p in decision.packs])))[1]
        places = self.places.data.get(decision.jurisdictions)
        if places is None:
            places = self.places.put(decision.jurisdictions, _dumps(list(decision.jurisdictions)))
        reasons = ",".join([self._reason(r) for r in decision.reasons])
        return (f'{{"id":{self._id(scenario_id)},"allowed":{"true" if decision.allowed else "false"},'
                f'"reasons":[{reasons}],"next_allowed_at":{self._instant(decision.next_allowed_at)},'
                f'"packs":{packs},"at":{self._instant(decision.at)},"jurisdictions":{places}}}\n')


def _error(line: int, scenario_id: Any, message: str) -> str:
    return _dumps({"line": line, "id": scenario_id, "error": {"code": "BAD_SCENARIO", "message": message}}) + "\n"


def check_stream(lines: Iterable[str], out: IO[str], packs: PackSet) -> bool:
    """Decide every non-blank line of `lines` and write one answer line each to `out`, in order, BATCH lines per
    write. True when every line was a scenario (none malformed). A UnicodeDecodeError from `lines` propagates
    after the answers to the lines before it were written."""
    reader = ScenarioReader()
    writer = AnswerWriter()
    # (contact, campaign) -> what the engine decides without the facts (number, place, plan): the reader returns
    # one object per distinct contact and campaign, so identity finds it; the entry keeps both alive, so an id is
    # never reused while it is there
    prepared: dict[tuple[int, int], Prepared] = {}
    pending: list[str] = []
    ok = True
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            scenario_id = None
            try:
                data, keyed = _loads(line)
                if data.__class__ is dict:
                    scenario_id = data.get("id")
                scenario_id, at, contact, campaign, facts = reader.parse(data, keyed)
            except json.JSONDecodeError as exc:
                pending.append(_error(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
                ok = False
            except sc.ScenarioError as exc:
                pending.append(_error(number, scenario_id, str(exc)))
                ok = False
            else:
                ready = prepared.get((id(contact), id(campaign)))
                if ready is None or ready.contact is not contact or ready.campaign is not campaign:
                    if len(prepared) >= PREPARED_MAX:
                        prepared.clear()
                    ready = prepared[(id(contact), id(campaign))] = prepare(contact, campaign, packs)
                pending.append(writer.line(decide(ready, facts, at), scenario_id))
            if len(pending) >= BATCH:
                out.write("".join(pending))
                pending.clear()
    finally:
        if pending:
            out.write("".join(pending))
    return ok
