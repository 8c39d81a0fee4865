"""Issue 16 point 16: docs/gateway.md's route table names every route the gateway serves, once, and nothing
else (it had duplicated rows and a table split in two)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.app import api_routes

DOC = Path(__file__).resolve().parents[1] / "docs" / "gateway.md"


def documented() -> list[tuple[str, str]]:
    text = DOC.read_text()
    section = text.split("## Routes", 1)[1]
    table = []
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break  # the table ends at its first non-row line: a split table would hide the rest
        table.append(line)
    pairs = []
    for line in table:
        cell = line.split("|")[1]
        for item in re.findall(r"`([A-Z/]+) (/[^`]+)`", cell):
            methods, path = item[0], item[1].split("?")[0]
            alternatives = re.search(r"\{([^{}]*,[^{}]*)\}", path)
            paths = [path.replace(alternatives.group(0), a) for a in alternatives.group(1).split(",")] \
                if alternatives else [path]
            pairs += [(m, p) for m in methods.split("/") for p in paths]
    return pairs


def test_the_route_table_matches_the_routes() -> None:
    served = {(r.method, r.path) for r in api_routes()} | {("GET", "/v1/openapi.json")}
    listed = documented()
    assert sorted(served - set(listed)) == [], "routes missing from docs/gateway.md"
    assert sorted(set(listed) - served) == [], "documented routes that do not exist"
    assert len(listed) == len(set(listed)), "a route is documented twice"
