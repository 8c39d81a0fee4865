"""Every error code the gateway can answer, found by reading the source (ast): the literal codes given to ApiError,
invalid(), conflict() and the domain errors the routes turn into API errors, the codes of aiohttp's own errors
(gateway/errors.py) and the OIDC refusals. A code passed through a variable must come from one of these places,
or be listed in PASSED_THROUGH with where it comes from; a call with a code this scan cannot read fails the test
(tests/test_console_errors.py), so a new code cannot slip past the catalogues."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The domain errors whose first argument is a stable code that the gateway answers as is.
DOMAIN_ERRORS = {"CampaignError", "FileError", "HoldError", "PrivacyError", "RequestError", "_problem"}
# Where those live, besides gateway/.
DOMAIN_MODULES = ["dialer/campaigns.py", "dialer/contacts", "dialer/holds.py", "dialer/privacy.py",
                  "dialer/subject_requests.py"]
# Codes passed through a name, with where the name's values come from (checked by the scan's other parts).
PASSED_THROUGH = {"exc.code", "code", "error.code"}
# Codes built from a name: the expression -> every code it can make (its callers pass what = tenant/list/campaign).
BUILT = {"f'bad_{what}'": {"bad_tenant", "bad_list", "bad_campaign"}}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _code_arg(call: ast.Call) -> ast.AST | None:
    """The node that carries the code in this call, or None when the call is not one that makes an error."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    kwargs = {k.arg: k.value for k in call.keywords}
    if name == "ApiError":
        return kwargs.get("code", call.args[1] if len(call.args) > 1 else None)
    if name == "invalid":
        return kwargs.get("code", ast.Constant("invalid_field"))
    if name == "conflict":
        return kwargs.get("code", call.args[0] if call.args else None)
    if name in DOMAIN_ERRORS:
        return kwargs.get("code", call.args[0] if call.args else None)
    if name == "_refusal" and len(call.args) >= 2:  # gateway/api/oidc.py
        return call.args[1]
    return None


def _files() -> list[Path]:
    files = sorted((ROOT / "gateway").rglob("*.py"))
    for module in DOMAIN_MODULES:
        path = ROOT / module
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def scan() -> tuple[set[str], list[str]]:
    """(codes, unreadable): every literal code, and 'file:line expression' for codes this scan cannot read."""
    codes: set[str] = set()
    unreadable: list[str] = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                arg = _code_arg(node)
                if path.name == "signin.py" and isinstance(node.func, ast.Name) and node.func.id == "failed":
                    arg = node.args[1]  # failed(reason, code, message) in POST /v1/session
                if arg is None:
                    continue
                text = _literal(arg)
                if text is not None:
                    codes.add(text)
                elif ast.unparse(arg) in BUILT:
                    codes |= BUILT[ast.unparse(arg)]
                elif ast.unparse(arg) not in PASSED_THROUGH:
                    unreadable.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(arg)}")
            # Tables of codes: aiohttp's errors mapped to ours, the OIDC refusals, the import's file errors.
            elif isinstance(node, ast.Assign | ast.AnnAssign) and any(
                    isinstance(t, ast.Name) and t.id in ("_HTTP_CODES", "REFUSALS")
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                value = node.value
                if isinstance(value, ast.Dict):
                    for k, v in zip(value.keys, value.values, strict=True):
                        codes.add(_literal(v) if isinstance(k, ast.Constant) and isinstance(k.value, int)
                                  else _literal(k) or "")
    codes.add("http_error")  # errors.py: an aiohttp error outside _HTTP_CODES
    codes.discard("")
    return codes, unreadable


def rules() -> set[str]:
    """Every `rule` an error can carry: the literal rule= of every call in gateway/, the campaign problems' rules
    (dialer/campaigns.py PROBLEM_RULES) and the needs_FIELD of a campaign missing what it needs to start."""
    from dialer.campaigns import PROBLEM_RULES, start_problems

    found = set(PROBLEM_RULES.values())
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.keyword) and node.arg == "rule":
                text = _literal(node.value)
                if text is not None:
                    found.add(text)
                elif isinstance(node.value, ast.IfExp) and all(
                        isinstance(x, ast.Constant) for x in (node.value.body, node.value.orelse)):
                    found |= {x for x in (_literal(node.value.body), _literal(node.value.orelse)) if x}
                elif ast.unparse(node.value) not in ("exc.rule", "rule"):  # passed through from a read one
                    raise AssertionError(f"{path}: a rule this scan cannot read: {ast.unparse(node.value)}")
    for config in ({"name": "x"}, {"name": "x", "agent_kind": "ai"}):
        found |= {f"needs_{field}" for field, _ in start_problems(config)}
    return found
