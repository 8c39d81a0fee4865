"""The connection to the record: PostgreSQL through a psycopg 3 pool, or an embedded SQLite file.

One small surface for both dialects: `transaction()` yields a Tx whose `execute`/`executemany`/`query` take SQL
written with %s placeholders (converted to ? for SQLite), and `ts()` turns an instant into what the dialect
stores. Any failure to reach or use the store becomes RecordUnavailable (the API answers 503, the CLI prints one
line, the archiver retries later); nothing else is caught here.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dialer.record import schema
from dialer.record.url import RecordUrl, parse_record_url

MIGRATIONS = Path(__file__).parent / "migrations"


class RecordUnavailable(Exception):
    """The record cannot be reached or used now. str(error) is one line, without the password."""


def _pg_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    import psycopg_pool

    return (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)


class RecordNotMigrated(RecordUnavailable):
    """The store is there but has no schema yet (`dialer record migrate`, or the archiver, creates it)."""


class RecordTooNew(RecordUnavailable):
    """The store's schema is at a revision this dialer does not know: a newer dialer migrated it."""


class Tx:
    """One transaction's cursor with dialect-neutral placeholders."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "postgresql" else sql.replace("%s", "?")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self._sql(sql), tuple(params))
        return self.cursor.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(self._sql(sql), tuple(params))
        return list(self.cursor.fetchall())

    def insert_new(self, table: str, columns: Sequence[str], key: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """INSERT rows, skipping those whose key is already stored (ON CONFLICT DO NOTHING). PostgreSQL: COPY into
        a temporary staging table, then one INSERT ... SELECT (an order of magnitude faster than row by row)."""
        if not rows:
            return
        cols = ", ".join(columns)
        conflict = f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
        if self.dialect != "postgresql":
            self.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(columns))}) {conflict}",
                             rows)
            return
        stage = f"stage_{table}"
        self.cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
        with self.cursor.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        self.cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} {conflict}")
        self.cursor.execute(f"TRUNCATE {stage}")


    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Plain bulk INSERT (no conflict handling: the caller's keys are new). PostgreSQL: COPY straight into the
        table; SQLite: one executemany."""
        if not rows:
            return
        cols = ", ".join(columns)
        if self.dialect != "postgresql":
            self.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})", rows)
            return
        with self.cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def ts_text(value: datetime) -> str:
    """An instant as SQLite stores it: fixed-width UTC text, so text order is time order."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


class Record:
    """The record store. Thread-safe: PostgreSQL connections come from the pool; SQLite opens a connection per
    transaction (WAL mode: readers do not wait for the archiver)."""

    def __init__(self, url: RecordUrl, *, pool_size: int = 8, timeout: float = 5.0) -> None:
        self.url = url
        self.dialect = url.dialect
        self.timeout = timeout
        self._pool: Any = None
        self._lock = threading.Lock()
        self._partitions: set[str] = set()
        if self.dialect == "postgresql":
            from psycopg_pool import ConnectionPool

            # open=False: a record that is down at start-up is not an error until it is used (then 503s)
            self._pool = ConnectionPool(url.url, min_size=1, max_size=max(1, pool_size), timeout=timeout,
                                        open=False, kwargs={"connect_timeout": max(1, int(timeout))},
                                        name="dialer-record")
            self._pool.open(wait=False)
        else:
            Path(url.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def from_config(cls, config: Any) -> Record:
        from dialer.private_files import data_dir

        return cls(parse_record_url(config["record.url"], data_dir(config)), pool_size=config["record.pool_size"])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- values -----------------------------------------------------------------------------------

    def ts(self, value: datetime) -> Any:
        return value.astimezone(UTC) if self.dialect == "postgresql" else ts_text(value)

    def day_sql(self, column: str) -> str:
        """SQL for the UTC calendar day of a stored instant, as YYYY-MM-DD text."""
        if self.dialect == "postgresql":
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"substr({column}, 1, 10)"

    def iso_sql(self, column: str) -> str:
        if self.dialect == "postgresql":
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        return column

    # --- transactions -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Tx]:
        """`read_only` (SQLite): a deferred transaction, so a reader does not wait for a writer (WAL): an import
        commits a whole list in one write transaction."""
        if self.dialect == "postgresql":
            with self._pg_errors_as_unavailable(), self._pool.connection() as conn, conn.transaction(), \
                    conn.cursor() as cur:
                yield Tx(cur, self.dialect)
            return
        if not Path(self.url.path).exists():  # opening would create an empty file where nobody meant one
            raise RecordNotMigrated(f"record {self.url.shown()}: no record there yet (run `dialer record migrate`)")
        try:
            conn = sqlite3.connect(self.url.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise RecordUnavailable(f"record {self.url.shown()}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            cur = conn.cursor()
            try:
                yield Tx(cur, self.dialect)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise RecordNotMigrated(f"record {self.url.shown()}: not migrated (run `dialer record migrate`)") \
                    from None
            raise RecordUnavailable(f"record {self.url.shown()}: {exc}") from None
        finally:
            conn.close()

    @contextmanager
    def _pg_errors_as_unavailable(self) -> Iterator[None]:
        import psycopg
        import psycopg_pool

        try:
            yield
        except psycopg_pool.PoolTimeout:
            raise RecordUnavailable(f"record {self.url.shown()}: {self._why_no_connection()}") from None
        except _pg_errors() as exc:
            raise RecordUnavailable(f"record {self.url.shown()}: {str(exc).strip().splitlines()[0]}") from None
        except psycopg.errors.UndefinedTable:
            raise RecordNotMigrated(f"record {self.url.shown()}: not migrated (run `dialer record migrate`)") \
                from None

    def _why_no_connection(self) -> str:
        """The pool only says it waited in vain: one direct attempt tells why (server down, refused, bad password)."""
        import psycopg

        try:
            psycopg.connect(self.url.url, connect_timeout=2).close()
        except psycopg.Error as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            return f"no connection within {self.timeout:g} s: {lines[0] if lines else type(exc).__name__}"
        return f"no free connection within {self.timeout:g} s (all {self._pool.max_size} in use)"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction(read_only=sql.lstrip()[:6].upper() == "SELECT") as tx:
            return tx.query(sql, params)

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
            return True
        except RecordUnavailable:
            return False

    # --- schema -----------------------------------------------------------------------------------

    def migrate(self) -> str:
        """Bring the schema to the newest revision (Alembic); returns it. Safe to run at every start."""
        # its INFO lines (plugin setup as it is imported, each step) are for people running it by hand
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if self.dialect == "sqlite" and not Path(self.url.path).exists() and Path(self.url.path).parent.is_dir():
            # personal data: the file (and the -wal and -shm files SQLite gives its mode) is the owner's alone
            os.close(os.open(self.url.path, os.O_WRONLY | os.O_CREAT, 0o600))
        with self._sqlite_migration_lock():
            return self._migrate()

    @contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        """SQLite: two processes migrating a new file at once (two workers' first import) take turns on a lock
        file beside it, as PostgreSQL's take turns on an advisory lock."""
        if self.dialect != "sqlite" or not Path(self.url.path).parent.is_dir():
            yield
            return
        import fcntl

        fd = os.open(self.url.path + ".migrate-lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _migrate(self) -> str:
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.runtime.migration import MigrationContext
        from alembic.util import CommandError
        from sqlalchemy import create_engine, exc

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        engine = create_engine(self.url.sqlalchemy(), connect_args={"connect_timeout": int(self.timeout)}
                               if self.dialect == "postgresql" else {})
        try:
            with engine.begin() as conn:
                if self.dialect == "postgresql":  # two processes migrating at once: one waits for the other
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(1802)")
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                return str(MigrationContext.configure(conn).get_current_revision())
        except exc.OperationalError as error:
            raise RecordUnavailable(f"record {self.url.shown()}: {str(error.orig).strip().splitlines()[0]}") \
                from None
        except CommandError as error:  # "Can't locate revision identified by '0009'": a newer dialer was here
            raise RecordTooNew(f"record {self.url.shown()}: its schema is at a revision this dialer does not know "
                               f"({error}); a newer dialer migrated it: run that version, or set record.url to "
                               "another record") from None
        finally:
            engine.dispose()

    def ensure_partitions(self, tx: Tx, table: str, instants: Sequence[datetime]) -> None:
        """PostgreSQL: create the monthly partitions of `table` these instants fall in (no-op in SQLite)."""
        if self.dialect != "postgresql":
            return
        for year, month in sorted({(i.astimezone(UTC).year, i.astimezone(UTC).month) for i in instants}):
            name = f"{table}_p{year:04d}{month:02d}"
            if name in self._partitions:
                continue
            nxt = (year + 1, 1) if month == 12 else (year, month + 1)
            tx.execute("SELECT pg_advisory_xact_lock(1803)")
            if not tx.query("SELECT to_regclass(%s)", (name,))[0][0]:
                tx.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM "
                           f"('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00')")
            # remembered before commit: a rolled-back creation is found missing again by to_regclass next time
            # (the cache is only cleared below, on failure)
            self._partitions.add(name)

    def forget_partitions(self) -> None:
        """After a failed transaction: partitions it created may have been rolled back."""
        self._partitions.clear()

    def partitions(self, table: str) -> list[str]:
        if self.dialect != "postgresql":
            return []
        rows = self.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                          "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1", (table,))
        return [r[0] for r in rows]

    @contextmanager
    def retention_session(self) -> Iterator[Tx]:
        """A transaction allowed to DELETE from the archive tables (retention only)."""
        with self.transaction() as tx:
            if self.dialect == "postgresql":
                tx.execute("SET LOCAL dialer.retention = 'on'")
                yield tx
            else:
                for table in schema.APPEND_ONLY:
                    tx.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
                yield tx
                for statement in schema.sqlite_triggers():
                    tx.execute(statement)
