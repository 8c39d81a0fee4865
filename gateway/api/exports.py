"""CSV exports of a list or a campaign: contacts, call attempts, outcomes per number (dialer/contacts/export.py).

The export is written to a temporary file in a thread and streamed to the caller (nothing stays on the
server afterwards), with the formula-injection protection of dialer/contacts/csvsafe.py. Each export is
recorded in the audit trail (who exported what).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dialer.contacts.export import export
from dialer.contacts.store import Keys
from gateway import trail
from gateway.api.support import csv_download, raw_redis, sync
from gateway.errors import invalid
from gateway.routing import SERVICES, Route, principal, query, redis_of

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}
QUERY = {"list": {**_NAME, "description": "export this list"},
         "campaign": {**_NAME, "description": "or this campaign"}}


def exporter(kind: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        who, params = principal(request), query(request)
        list_id, campaign = params.get("list"), params.get("campaign")
        if (list_id is None) == (campaign is None):
            raise invalid("list", "give exactly one of list or campaign", code="missing_field", rule="list_or_campaign")
        if list_id and not await sync(raw_redis(request).exists, Keys(who.tenant).list(list_id)):
            raise invalid("list", "no such list", rule="no_such_list")
        if campaign and await sync(request.app[SERVICES]["campaigns"].get, who.tenant, campaign) is None:
            raise invalid("campaign", "no such campaign", rule="no_such_campaign")
        await trail.record(redis_of(request), who.tenant, "export.create", actor=who.user, token_id=who.token_id,
                           export=kind, list=list_id or "", campaign=campaign or "")
        return await csv_download(
            request, lambda out: export(raw_redis(request), who.tenant, kind, out, list_id=list_id, campaign=campaign),
            f"{kind}-{list_id or campaign}.csv")

    handler.__name__ = f"export_{kind}"
    return handler


ROUTES = [
    Route("GET", f"/v1/exports/{kind}", exporter(kind), summary, "exports.create", content_type="text/csv",
          query=QUERY, tag="exports")
    for kind, summary in (
        ("contacts", "Export the contacts of a list or campaign (CSV)"),
        ("attempts", "Export the call attempts of a list or campaign (CSV)"),
        ("outcomes", "Export the outcome per number of a list or campaign (CSV)"),
    )
]
