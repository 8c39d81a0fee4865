"""Contacts live in the record (issue 18): an import, a reader and the API when the record cannot be reached.
Real redis-server; a PostgreSQL URL nobody listens on stands for a record that is down."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from dialer.contacts import jobs
from dialer.contacts.jobs import create_import, resume_imports, run_import_inline
from dialer.contacts.store import Keys, import_status, list_count
from dialer.record import current
from dialer.record.store import Record, RecordUnavailable
from dialer.record.url import parse_record_url
from dialer.redisproc import free_port
from tests.gateway_support import start_gateway, stop_gateway

T = "acme"


def down() -> Record:
    return Record(parse_record_url(f"postgresql://nobody@127.0.0.1:{free_port()}/record"), pool_size=1, timeout=1)


def big(path: Path, rows: int) -> Path:
    path.write_text("phone,first_name\n" + "".join(f"+336{i:08d},n{i}\n" for i in range(rows)))
    return path


def staged(client: redis.Redis, import_id: str) -> list[bytes]:
    return list(client.scan_iter(match=Keys(T, import_id).stg + "*"))


def test_a_record_that_is_down_fails_the_import_with_nothing_imported(redis_client: redis.Redis,
                                                                       tmp_path: Path) -> None:
    ticket = create_import(redis_client, T, big(tmp_path / "l.csv", 300), "leads", region="FR")
    outage = down()
    current.use(outage, migrated=False)
    try:
        status = run_import_inline(redis_client, T, ticket.import_id)
    finally:
        current.use(None)
        outage.close()
    assert (status["status"], status["error_code"]) == ("failed", "record_unavailable"), status
    assert "nothing was imported" in status["error"] and "Traceback" not in status["error"]
    assert not staged(redis_client, ticket.import_id)


def test_a_commit_whose_record_went_down_is_finished_once_it_is_back(redis_client: redis.Redis, tmp_path: Path,
                                                                      record) -> None:
    ticket = create_import(redis_client, T, big(tmp_path / "l.csv", 2500), "leads", region="FR")
    importer = jobs.Importer(redis_client, T, ticket.import_id)
    importer._set(status="running")
    importer._plan(importer._params())
    importer._work(coordinator=True)
    redis_client.hset(Keys(T, ticket.import_id).status, mapping={"status": "committing", "commit_token": "t1"})
    outage = down()
    current.use(outage, migrated=False)
    try:
        with pytest.raises(RecordUnavailable):
            importer.commit(record_wait=0)
        assert resume_imports(redis_client, stale_after=0) == []  # still down: it stays committing
    finally:
        outage.close()
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committing" and "record" in status["record_error"]
    current.use(record)  # back
    assert list_count(T, "leads") == 0  # nothing of it was visible meanwhile
    assert resume_imports(redis_client, stale_after=0) == [ticket.import_id]
    status = import_status(redis_client, T, ticket.import_id)
    assert status["status"] == "committed" and status["summary"]["contacts_added"] == 2500
    assert "record_error" not in status and list_count(T, "leads") == 2500
    assert not staged(redis_client, ticket.import_id)


async def test_the_api_answers_503_when_the_record_cannot_be_read(redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.sadd(Keys(T).lists, "leads")
    gw = await start_gateway(redis_url, DIALER_RECORD_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/record")
    try:
        resp = await gw.client.get("/v1/lists", headers=gw.auth())  # the members' counts are the record's
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "record_unavailable", body
        assert resp.headers["Retry-After"]
    finally:
        await stop_gateway(gw)
