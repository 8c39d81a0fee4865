"""A small reader for Asterisk `extensions.conf` files, and the bits of dialplan evaluation the
sandbox needs to run OUR dialplan (asterisk/extensions_dialer.conf) instead of a Python copy of it.

Supported (what our dialplan uses, on purpose kept small):
- `[context]`, `exten => name,prio(label),App(args)`, `same => n(label),App(args)`, `;` comments,
  `#include`/`#tryinclude` lines (ignored here), `[general]`/`[globals]` sections (skipped);
- substitution of `${VAR}`, `${IF(cond?a:b)}`, `${EXTEN}` and `$[ a = b ]`, `$[ a != b ]`,
  `$[ a & b ]`, `$[ a | b ]`, `$[ a - b ]` (integers) expressions.

Also used by the dialplan checker (tests/test_dialplan_lint.py) to find contexts and priorities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_SECTION = re.compile(r"^\[([^\]]+)\]")
_LINE = re.compile(r"^(exten|same)\s*=>?\s*(.*)$", re.IGNORECASE)


class DialplanError(ValueError):
    """The dialplan text cannot be read (message names the file and line)."""


@dataclass(frozen=True)
class Step:
    """One priority of one extension."""

    context: str
    exten: str
    priority: int
    label: str | None
    app: str
    args: str
    line: int  # source line number (for error messages)


@dataclass
class Dialplan:
    contexts: dict[str, dict[str, list[Step]]] = field(default_factory=dict)
    source: str = ""

    def extension(self, context: str, exten: str) -> list[Step] | None:
        """The steps of the extension in `context` matching `exten` (literal first, then patterns)."""
        table = self.contexts.get(context)
        if table is None:
            return None
        if exten in table:
            return table[exten]
        for name, steps in table.items():
            if name.startswith("_") and pattern_matches(name, exten):
                return steps
        return None

    def find(self, context: str, exten: str, label_or_priority: str) -> tuple[str, int] | None:
        """Resolve a Goto target to (exten, index into the steps)."""
        steps = self.extension(context, exten)
        if not steps:
            return None
        for i, step in enumerate(steps):
            if step.label == label_or_priority or str(step.priority) == label_or_priority:
                return exten, i
        return None


def pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension patterns: _X (0-9), Z (1-9), N (2-9), [..] sets, . (one or more), ! (zero or more)."""
    body = pattern[1:]
    regex = ""
    i = 0
    while i < len(body):
        c = body[i].upper()
        if c == "X":
            regex += "[0-9]"
        elif c == "Z":
            regex += "[1-9]"
        elif c == "N":
            regex += "[2-9]"
        elif c == ".":
            regex += ".+"
        elif c == "!":
            regex += ".*"
        elif c == "[":
            end = body.index("]", i)
            regex += "[" + re.escape(body[i + 1 : end]).replace("\\-", "-") + "]"
            i = end
        else:
            regex += re.escape(body[i])
        i += 1
    return re.fullmatch(regex, exten) is not None


def split_app(text: str) -> tuple[str, str]:
    """`App(args)` -> ("App", "args"). An app without parentheses has empty args."""
    text = text.strip()
    if "(" not in text:
        return text, ""
    name, _, rest = text.partition("(")
    if not rest.endswith(")"):
        raise ValueError(f"unbalanced parentheses in {text!r}")
    return name.strip(), rest[:-1]


def strip_comment(line: str) -> str:
    """Remove a `;` comment (an escaped `\\;` is kept)."""
    out = []
    i = 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out).rstrip()


def parse(text: str, source: str = "<dialplan>") -> Dialplan:
    plan = Dialplan(source=source)
    context: str | None = None
    last: Step | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).strip()
        if not line or line.startswith("#"):
            continue
        section = _SECTION.match(line)
        if section:
            context = section.group(1).strip()
            last = None
            if context not in ("general", "globals"):
                plan.contexts.setdefault(context, {})
            continue
        if context in (None, "general", "globals"):
            continue
        match = _LINE.match(line)
        if not match:
            continue  # include =>, switch =>, ignorepat => : not used by the sandbox
        kind, rest = match.group(1).lower(), match.group(2).lstrip(">").strip()
        try:
            if kind == "exten":
                name, prio_text, app_text = _split_exten(rest)
            else:
                if last is None:
                    raise ValueError("'same =>' without a preceding 'exten =>'")
                name = last.exten
                prio_text, _, app_text = rest.partition(",")
            prio_text, label = _label(prio_text.strip())
            steps = plan.contexts[context].setdefault(name, [])
            if prio_text == "n":
                if not steps:
                    raise ValueError("priority 'n' before priority 1")
                priority = steps[-1].priority + 1
            elif prio_text.isdigit():
                priority = int(prio_text)
            else:
                raise ValueError(f"bad priority {prio_text!r}")
            app, args = split_app(app_text)
        except ValueError as exc:
            raise DialplanError(f"{source}:{number}: {exc}") from None
        last = Step(context, name, priority, label, app, args, number)
        steps.append(last)
    return plan


def _split_exten(rest: str) -> tuple[str, str, str]:
    name, sep, remainder = rest.partition(",")
    prio, sep2, app = remainder.partition(",")
    if not sep or not sep2:
        raise ValueError("expected 'exten => name,priority,App(args)'")
    return name.strip(), prio, app


def _label(prio: str) -> tuple[str, str | None]:
    if "(" in prio and prio.endswith(")"):
        base, _, label = prio.partition("(")
        return base.strip(), label[:-1].strip()
    return prio, None


def load(path: str | Path) -> Dialplan:
    p = Path(path)
    return parse(p.read_text(encoding="utf-8"), str(p))


# --- evaluation -------------------------------------------------------------------------------------

Functions = Mapping[str, Callable[[str], str]]


def substitute(text: str, variables: Mapping[str, str], functions: Functions | None = None) -> str:
    """Expand `${...}` and `$[...]` as Asterisk does before running an application."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("${", i) or text.startswith("$[", i):
            opener, closer = text[i + 1], "}" if text[i + 1] == "{" else "]"
            end = _matching(text, i + 1, opener, closer)
            inner = substitute(text[i + 2 : end], variables, functions)
            out.append(_expression(inner) if opener == "[" else _variable(inner, variables, functions))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _matching(text: str, start: int, opener: str, closer: str) -> int:
    depth = 0
    for j in range(start, len(text)):
        if text[j] == opener:
            depth += 1
        elif text[j] == closer:
            depth -= 1
            if depth == 0:
                return j
    raise DialplanError(f"unbalanced {opener}{closer} in {text!r}")


def _variable(inner: str, variables: Mapping[str, str], functions: Functions | None) -> str:
    if "(" in inner and inner.endswith(")"):
        name, _, arg = inner.partition("(")
        arg = arg[:-1]
        if name.upper() == "IF":
            cond, _, branches = arg.partition("?")
            yes, _, no = branches.partition(":")
            return yes if _truthy(cond) else no
        if functions and name.upper() in functions:
            return functions[name.upper()](arg)
        return ""
    return str(variables.get(inner, ""))


def _truthy(value: str) -> bool:
    value = value.strip()
    return value not in ("", "0")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _expression(expr: str) -> str:
    """The subset of Asterisk `$[...]` our dialplan uses: one binary operator, or a bare value."""
    for op in ("!=", "=", "&", "|", ">=", "<=", ">", "<", "-", "+"):
        left, sep, right = _split_outside_quotes(expr, op)
        if sep:
            a, b = _unquote(left), _unquote(right)
            if op == "=":
                return "1" if a == b else "0"
            if op == "!=":
                return "0" if a == b else "1"
            if op == "&":
                return "1" if _truthy(a) and _truthy(b) else "0"
            if op == "|":
                return "1" if _truthy(a) or _truthy(b) else "0"
            try:
                x, y = float(a or 0), float(b or 0)
            except ValueError:
                return "0"
            if op in ("-", "+"):
                value = x - y if op == "-" else x + y
                return str(int(value)) if value == int(value) else str(value)
            result = {">=": x >= y, "<=": x <= y, ">": x > y, "<": x < y}[op]
            return "1" if result else "0"
    return _unquote(expr)


def _split_outside_quotes(expr: str, op: str) -> tuple[str, str, str]:
    in_quote = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            in_quote = not in_quote
        elif not in_quote and expr.startswith(op, i):
            # "!=" must not be read as "=", and "<="/">=" not as "<"/">"
            if op == "=" and i > 0 and expr[i - 1] in "!<>":
                i += 1
                continue
            if op in ("<", ">") and expr.startswith("=", i + 1):
                i += 1
                continue
            if op == "-" and not expr[:i].strip():
                i += 1
                continue
            return expr[:i], op, expr[i + len(op) :]
        i += 1
    return expr, "", ""


def split_args(args: str) -> list[str]:
    """Application arguments split on commas outside parentheses and quotes."""
    out, depth, current, quote = [], 0, [], False
    for c in args:
        if c == '"':
            quote = not quote
        if c in "([{" and not quote:
            depth += 1
        elif c in ")]}" and not quote:
            depth -= 1
        if c == "," and depth == 0 and not quote:
            out.append("".join(current))
            current = []
        else:
            current.append(c)
    out.append("".join(current))
    return out


def goto_target(target: str) -> tuple[str | None, str | None, str]:
    """`label` | `exten,label` | `context,exten,label` -> (context, exten, label)."""
    parts = [p.strip() for p in target.split(",")]
    if len(parts) == 1:
        return None, None, parts[0]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return parts[0], parts[1], parts[2]


def gotoif_target(args: str) -> str | None:
    """`cond?iftrue:iffalse` (already substituted) -> the chosen target or None."""
    cond, _, branches = args.partition("?")
    yes, _, no = branches.partition(":")
    chosen = yes if _truthy(cond) else no
    return chosen.strip() or None
