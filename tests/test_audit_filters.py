"""GET /v1/audit's filters run as SQL on the archived part (dialer.record.trail.ArchiveFilter) and answer exactly what
the scan of the joined Redis tail and archive answers: kinds, actors, time ranges cut inside a second, entries
written without a fraction of a second, month ends and leap days, and rows whose `at` a scan reads as 1970. On SQLite
and on the PostgreSQL the tests start, with a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from dialer.audit import AuditEvent, AuditLog
from dialer.record.archiver import Archiver
from dialer.record.store import Record
from dialer.record.trail import ArchiveFilter, newest_first
from gateway.api import audit as api

KEY = "k" * 32
T = "acme"
DAMAGED = "dmg"
INSTANTS = [datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC),
            datetime(2028, 3, 1, 0, 0, 0, 500_000, tzinfo=UTC), datetime(2028, 1, 31, 12, 0, 0, 1, tzinfo=UTC),
            datetime(2027, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), datetime(2028, 4, 30, 8, 30, tzinfo=UTC)]
KINDS = ["consent", "optout", "gate_decision"]
ACTORS = ["api:t1", "engine", "user:ann"]


def scan_page(client: redis.Redis, record: Record, tenant: str, params: dict[str, Any]) -> dict[str, Any]:
    """read_page as it was: every entry of the joined sequence read and tested in Python."""
    from dialer.record import trail

    plain = trail.newest_first

    def unfiltered(*args: Any, match: Any = None, **kwargs: Any) -> Any:
        return plain(*args, **kwargs)

    api.newest_first = unfiltered  # type: ignore[assignment]
    try:
        return api.read_page(client, record, tenant, params)
    finally:
        api.newest_first = plain  # type: ignore[assignment]


def every_page(read: Any, client: redis.Redis, record: Record, tenant: str, params: dict[str, Any]) -> list[tuple]:
    seen, before = [], None
    while True:
        page = read(client, record, tenant, {**params, **({"before": before} if before else {})})
        seen += [(item["seq"], item["at"], item["kind"], item["actor"]) for item in page["items"]]
        before = page["next_before"]
        if before is None:
            return seen


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


QUERIES: list[dict[str, Any]] = [
    {}, {"kind": "consent"}, {"actor": "engine"}, {"kind": "optout", "actor": "user:ann"},
    {"since": iso(INSTANTS[2])}, {"until": iso(INSTANTS[2])}, {"since": iso(INSTANTS[1]), "until": iso(INSTANTS[2])},
    {"since": "2028-02-29T23:59:59.5Z"}, {"until": "2028-03-01T00:00:00Z"}, {"since": "2028-01-31T12:00:00Z",
                                                                             "until": "2028-01-31T12:00:00.000002Z"},
    {"kind": "gate_decision", "since": "2027-06-01T00:00:00Z", "until": "2028-03-01T00:00:00.5Z"},
    {"since": "1969-01-01T00:00:00Z", "until": "1971-01-01T00:00:00Z"}, {"until": "1971-01-01T00:00:00+01:00"},
]


@pytest.mark.parametrize("limit", [3, 100])
def test_the_filters_in_sql_answer_what_the_scan_answers(redis_client: redis.Redis, record: Record,
                                                          limit: int) -> None:
    audit = AuditLog(redis_client, KEY)
    events = [AuditEvent(KINDS[i % 3], ACTORS[(i // 3) % 3], {"person": f"p{i}", "action": "grant"},
                         INSTANTS[i % len(INSTANTS)] + timedelta(days=(i // 18) * 400)) for i in range(60)]
    audit.append_many(T, events[:50])
    Archiver(redis_client, record, secret_key=KEY, tail=timedelta(0), batch=20).run_once([T])
    audit.append_many(T, events[50:])  # a Redis tail after the archived part
    # Rows whose `at` the scan reads as 1970 or not as written (damaged: verify reports them), archived as found.
    odd = ["garbage", "2027-02-29T10:00:00Z", "2028-13-01T00:00:00Z", "2028-03-01T24:00:00Z",
           "2028-03-01T10:00:00+02:00", "2028-03-01T10:00:00.5Z", "0000-01-01T00:00:00Z", "2028-03-01 10:00:00Z",
           "2028-02-01T00:00:00Z"]
    with record.transaction() as tx:
        record.ensure_partitions(tx, "audit_archive", [datetime(2028, 3, 1, tzinfo=UTC)])
        for seq, at in enumerate(odd, start=1):
            tx.execute("INSERT INTO audit_archive (tenant, seq, at, written, written_at, kind, actor, payload, body, "
                       "prev, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                       (DAMAGED, seq, at, 0, record.ts(datetime(2028, 3, 1, tzinfo=UTC)), "consent", "engine", "{}",
                        "", "", f"h{seq}"))
        tx.execute("INSERT INTO archive_progress (tenant, seq, hash, updated_at) VALUES (%s, %s, %s, %s)",
                   (DAMAGED, len(odd), f"h{len(odd)}", record.ts(datetime(2028, 3, 1, tzinfo=UTC))))
    assert len(list(newest_first(redis_client, record, T))) == 60
    # the SQL does narrow the archived part (the Redis tail's 10 entries come whole)
    assert len(list(newest_first(redis_client, record, T, match=ArchiveFilter(kind="consent")))) == 17 + 10
    assert len(list(newest_first(redis_client, record, DAMAGED, match=ArchiveFilter(
        since=datetime(2028, 3, 1, 10, tzinfo=UTC))))) == 8  # all but the last are read as 1970 or not as written
    for tenant in (T, DAMAGED):
        for query in QUERIES:
            params = {**query, "limit": limit}
            expected = every_page(scan_page, redis_client, record, tenant, params)
            assert every_page(api.read_page, redis_client, record, tenant, params) == expected, (tenant, query)
            if tenant == T and limit == 100:
                # one page, as the scan gives it (both read everything: no SCAN_LIMIT here)
                assert api.read_page(redis_client, record, tenant, params) == scan_page(redis_client, record,
                                                                                        tenant, params)
    assert every_page(api.read_page, redis_client, record, DAMAGED, {"until": "1971-01-01T00:00:00Z"}) != []
