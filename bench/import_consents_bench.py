"""A consent-column list imported into the embedded SQLite record (issue 18): Redis bytes per staged row while the
import runs, staging and commit wall time.

    python bench/import_consents_bench.py [--rows 100000]

Starts its own redis-server; the record is a new SQLite file in a temp dir. In one process: plan, stage every chunk
(the coordinator's loop, as a one-worker import does), then the commit (publish, then the consents through the fact
store). Uses only what main and the s16-record branch both have, so the two can be compared (PYTHONPATH picks one).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    from dialer.contacts import jobs
    from dialer.contacts.store import Keys, import_status
    from dialer.record import current
    from dialer.record.store import Record
    from dialer.record.url import parse_record_url
    from dialer.suppression import configure

    configure("bench-key")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                                   "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            record = Record(parse_record_url(f"sqlite:///{tmp}/record.db"))
            record.migrate()
            current.use(record)
            path = Path(tmp) / "c.csv"
            with path.open("w") as fh:
                fh.write("phone,first_name,consent_given_at,consent_source,consent_evidence\n")
                for i in range(args.rows):
                    fh.write(f"+336{i:08d},n{i},2026-01-0{1 + i % 9},web form,form-{i}\n")
            ticket = jobs.create_import(client, "acme", path, "bench", region="FR")
            importer = jobs.Importer(client, "acme", ticket.import_id)
            importer._set(status="running")
            chunks = len(importer._plan(importer._params()))
            began = time.monotonic()
            importer._work(coordinator=True)
            importer._wait_for_chunks(chunks)
            staged = time.monotonic() - began
            keys = Keys("acme", ticket.import_id)
            owned = [*client.scan_iter(match=keys.stg + "*"), *client.scan_iter(match=keys.status + "*")]
            used = sum(int(client.memory_usage(k) or 0) for k in owned)
            began = time.monotonic()
            importer.commit()
            committed = time.monotonic() - began
            summary = import_status(client, "acme", ticket.import_id)["summary"]
            assert summary["consents"] == args.rows and summary["contacts_added"] == args.rows, summary
            print(f"rows {args.rows}: Redis {used / args.rows:.1f} B/row staged ({used} B in {len(owned)} keys), "
                  f"staging {staged:.1f} s, commit {committed:.1f} s")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
