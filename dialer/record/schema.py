"""The record's tables, as SQL for each dialect (the Alembic migrations and the tests read them here).

Revision 0001 made the tables of _TABLES; 0002 added usage_records (_USAGE_TABLES). A revision's statements never
change once released: a new table goes into a new revision's set, so a store migrated long ago and a new one end
up with the same schema.

Archive tables are append-only: in PostgreSQL a trigger refuses UPDATE and DELETE unless the session set
`dialer.retention = on` (dialer.record.store.Record.retention_session), and then allows only DELETE; in SQLite
a trigger refuses both (retention drops the trigger, deletes and re-creates it in one transaction).
The audit archive, gate decisions and call records are partitioned by month in PostgreSQL (retention drops
whole partitions); partitions are created on first use by the archiver (dialer.record.store.ensure_partitions).
"""

from __future__ import annotations

# Partitioned (PostgreSQL) tables and the column they are partitioned on.
PARTITIONED = {"audit_archive": "written_at", "gate_decisions": "at", "call_records": "at"}
# Tables that only ever receive INSERTs (and retention's deletes), by the revision that made them.
_APPEND_ONLY_0001 = ("audit_archive", "gate_decisions", "gate_denials", "call_records", "consents", "optouts",
                     "audit_bases")
_APPEND_ONLY_0002 = ("usage_records",)
_APPEND_ONLY_0004 = ("audit_breaks",)
APPEND_ONLY = _APPEND_ONLY_0001 + _APPEND_ONLY_0002 + _APPEND_ONLY_0004

# Column types by dialect: (PostgreSQL, SQLite).
_T = {"ts": ("timestamptz", "text"), "bool": ("boolean", "integer"), "int": ("bigint", "integer"),
      "real": ("double precision", "real")}

_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    # One row per audit entry, exactly as Redis held it (strings kept byte for byte: the hashes cover them).
    "audit_archive": ([("tenant", "text"), ("seq", "int"), ("at", "text"), ("written", "int"),
                       ("written_at", "ts"), ("kind", "text"), ("actor", "text"), ("payload", "text"),
                       ("body", "text"), ("prev", "text"), ("hash", "text")], ("tenant", "seq", "written_at")),
    # Where a tenant's archived chain starts when it does not start at the genesis (the signed Redis base the
    # archive began from, or retention's new base).
    "audit_bases": ([("tenant", "text"), ("seq", "int"), ("hash", "text"), ("mac", "text"), ("set_at", "ts")],
                    ("tenant", "seq")),
    # One row per gate decision (allowed or not), from its audit entry.
    "gate_decisions": ([("tenant", "text"), ("seq", "int"), ("at", "ts"), ("campaign", "text"),
                        ("contact_id", "text"), ("person", "text"), ("phone", "text"), ("mode", "text"),
                        ("allowed", "bool"), ("reasons", "text"), ("call_id", "text")], ("tenant", "seq", "at")),
    # One row per reason of a denial: "denials by reason" is a plain GROUP BY in both dialects.
    "gate_denials": ([("tenant", "text"), ("seq", "int"), ("at", "ts"), ("campaign", "text"), ("code", "text")],
                     ("tenant", "seq", "code")),
    # One row per outcome report of an attempt (the AMI's at hangup, an agent's disposition ...); the view
    # call_attempts keeps the last one per call: one call record per attempt.
    "call_records": ([("tenant", "text"), ("seq", "int"), ("at", "ts"), ("call_id", "text"), ("campaign", "text"),
                      ("contact_id", "text"), ("person", "text"), ("phone", "text"), ("outcome", "text"),
                      ("reported", "text"), ("live", "bool"), ("abandoned", "bool"), ("ring_s", "real"),
                      ("talk_s", "real"), ("wrapup_s", "real"), ("hangup_cause", "int"), ("endpoint", "text"),
                      ("actor", "text"), ("gate_seq", "int"), ("gate_reasons", "text")], ("tenant", "seq", "at")),
    "consents": ([("tenant", "text"), ("seq", "int"), ("at", "ts"), ("person", "text"), ("phone", "text"),
                  ("action", "text"), ("purpose", "text"), ("campaign", "text"), ("source", "text"),
                  ("written_consent", "bool"), ("evidence_ref", "text"), ("text_ref", "text"), ("ip", "bool"),
                  ("expires_at", "text"), ("actor", "text")], ("tenant", "seq")),
    # The opt-out and suppression log: opt-outs (scope company or campaign) and erased people kept on the
    # suppression list (scope "suppressed", one row per person of the erasure entry: part 0, 1, ...).
    "optouts": ([("tenant", "text"), ("seq", "int"), ("part", "int"), ("at", "ts"), ("person", "text"),
                 ("phone", "text"), ("scope", "text"), ("campaign", "text"), ("source", "text"), ("call_id", "text"),
                 ("keyword", "bool"), ("actor", "text")], ("tenant", "seq", "part")),
    # The archiver's cursor: the last seq of each tenant's chain the record holds, and its hash (the next
    # entry's prev must equal it). Written in the same transaction as the rows.
    "archive_progress": ([("tenant", "text"), ("seq", "int"), ("hash", "text"), ("updated_at", "ts")],
                         ("tenant",)),
}

# Revision 0002 (issue 19): metered usage, one row per increment of the Redis counters (dialer/usage/meter.py):
# a call's `usage` audit entry (what it added: attempts, connected, seconds ...) or a contacts-stored reading
# (contacts_stored set, the measures 0). Summing a day's rows gives the day's counters; the last reading of a
# period (highest seq) is its contacts stored. Kept for billing: record retention does not touch it.
_USAGE_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "usage_records": ([("tenant", "text"), ("seq", "int"), ("at", "ts"), ("day", "text"), ("call_id", "text"),
                       ("campaign", "text"), ("attempts", "int"), ("connected", "int"), ("talk_seconds", "int"),
                       ("billable_seconds", "int"), ("ai_seconds", "int"), ("recordings", "int"),
                       ("recording_seconds", "int"), ("contacts_stored", "int")], ("tenant", "seq")),
}
_USAGE_INDEXES = (("usage_records", ("tenant", "day")),)

# Revision 0004: a confirmed discontinuity of a tenant's chain (dialer/record/relink.py). After Redis lost entries
# the record already holds (restarted empty, flushed, a failover that lost the last writes), Redis's new trail does
# not link to the archive; an operator confirms the loss and the record accepts the new trail as a new segment.
# Entries of the segment are stored under record seqs that go on from the archive's (`seq` = the first of them;
# record seq = Redis seq + `shift`), so nothing archived is changed and an entry whose Redis seq an archived one
# already has is still stored once, under its own record seq. `last_seq`/`last_hash`: the last archived entry
# before the break; `first_seq`/`first_prev`/`first_hash`: the new segment's first Redis entry; `fork_seq`: the
# last Redis seq the new trail still shares with the archive (0: nothing, the trail restarted). Signed (`mac`,
# HMAC under security.secret_key over every field) so that nobody without the key can pass a cut for a confirmed
# loss.
_BREAK_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "audit_breaks": ([("tenant", "text"), ("seq", "int"), ("shift", "int"), ("last_seq", "int"),
                      ("last_hash", "text"), ("fork_seq", "int"), ("first_seq", "int"), ("first_prev", "text"),
                      ("first_hash", "text"), ("detected", "text"), ("reason", "text"), ("confirmed_by", "text"),
                      ("confirmed_at", "ts"), ("mac", "text")], ("tenant", "seq", "first_hash")),
}

_INDEXES = (
    ("gate_decisions", ("tenant", "person")), ("gate_decisions", ("tenant", "call_id")),
    ("gate_decisions", ("tenant", "campaign", "at")), ("gate_denials", ("tenant", "campaign", "at")),
    ("call_records", ("tenant", "call_id")), ("call_records", ("tenant", "campaign", "at")),
    ("call_records", ("tenant", "person")), ("consents", ("tenant", "person")), ("optouts", ("tenant", "person")),
)

_ALL = {**_TABLES, **_USAGE_TABLES, **_BREAK_TABLES}
COLUMNS = {name: [c for c, _ in cols] for name, (cols, _) in _ALL.items()}
KEYS = {name: key for name, (_, key) in _ALL.items()}

# The attempt as one row, from all its outcome reports (the AMI's at hangup, an agent's disposition ...): the
# outcome of the last report (the strongest reported, see dialer.facts.OUTCOME_PRECEDENCE), the figures whichever
# report had them, the most specific endpoint (agent: before ai: before queue:).
def call_attempts_view(dialect: str) -> str:
    any_ = "bool_or" if dialect == "postgresql" else "max"
    return f"""
CREATE VIEW call_attempts AS
SELECT r.tenant, r.call_id, max(r.seq) AS seq, min(r.at) AS at, max(r.campaign) AS campaign,
       max(r.contact_id) AS contact_id, max(r.person) AS person, max(r.phone) AS phone,
       (SELECT x.outcome FROM call_records x WHERE x.tenant = r.tenant AND x.call_id = r.call_id
        ORDER BY x.seq DESC LIMIT 1) AS outcome,
       {any_}(r.live) AS live, {any_}(r.abandoned) AS abandoned, max(r.ring_s) AS ring_s, max(r.talk_s) AS talk_s,
       max(r.wrapup_s) AS wrapup_s, max(r.hangup_cause) AS hangup_cause, min(r.endpoint) AS endpoint,
       max(r.gate_seq) AS gate_seq, max(r.gate_reasons) AS gate_reasons
FROM call_records r WHERE r.call_id IS NOT NULL
GROUP BY r.tenant, r.call_id
"""


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION record_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('dialer.retention', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'the record is append-only: % on % refused (only retention deletes, and nothing updates)',
    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _type(kind: str, dialect: str) -> str:
    pair = _T.get(kind)
    return kind if pair is None else pair[0 if dialect == "postgresql" else 1]


def table_statements(dialect: str, tables: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]],
            indexes: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    out = []
    for name, (cols, key) in tables.items():
        columns = ", ".join(f"{c} {_type(t, dialect)}" + (" NOT NULL" if c in key else "") for c, t in cols)
        partition = f" PARTITION BY RANGE ({PARTITIONED[name]})" if dialect == "postgresql" and name in PARTITIONED \
            else ""
        out.append(f"CREATE TABLE {name} ({columns}, PRIMARY KEY ({', '.join(key)})){partition}")
    for table, cols in indexes:
        out.append(f"CREATE INDEX {table}_{'_'.join(cols)} ON {table} ({', '.join(cols)})")
    return out


def _append_only(dialect: str, tables: tuple[str, ...]) -> list[str]:
    if dialect == "postgresql":
        return [f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION record_append_only()" for table in tables]
    return sqlite_triggers(tables)


def create_statements(dialect: str) -> list[str]:
    """Revision 0001."""
    out = table_statements(dialect, _TABLES, _INDEXES)
    out.append(call_attempts_view(dialect))
    if dialect == "postgresql":
        out.append(_PG_FUNCTION)
    return out + _append_only(dialect, _APPEND_ONLY_0001)


def usage_statements(dialect: str) -> list[str]:
    """Revision 0002: usage_records."""
    return table_statements(dialect, _USAGE_TABLES, _USAGE_INDEXES) + _append_only(dialect, _APPEND_ONLY_0002)


def break_statements(dialect: str) -> list[str]:
    """Revision 0004: audit_breaks."""
    return table_statements(dialect, _BREAK_TABLES, ()) + _append_only(dialect, _APPEND_ONLY_0004)


def drop_break_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in _BREAK_TABLES]


def sqlite_triggers(tables: tuple[str, ...] = APPEND_ONLY) -> list[str]:
    return [f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} BEGIN "
            f"SELECT RAISE(ABORT, 'the record is append-only: {op} on {table} refused'); END"
            for table in tables for op in ("UPDATE", "DELETE")]


def drop_usage_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in _USAGE_TABLES]


def drop_statements(dialect: str) -> list[str]:
    """Revision 0001's tables (downgrade to nothing)."""
    out = ["DROP VIEW IF EXISTS call_attempts"]
    out += [f"DROP TABLE IF EXISTS {name}" + (" CASCADE" if dialect == "postgresql" else "") for name in _TABLES]
    if dialect == "postgresql":
        out.append("DROP FUNCTION IF EXISTS record_append_only()")
    return out


# Revision 0008: the audit readers' filters in SQL (dialer.record.trail.ArchiveFilter): a kind's or an actor's entries,
# newest first, without walking the tenant's whole archive. On PostgreSQL an index on the partitioned table is made on
# every partition, present and future.
_AUDIT_FILTER_INDEXES = (("audit_archive_kind", "(tenant, kind, seq)"), ("audit_archive_actor", "(tenant, actor, seq)"))


def audit_filter_index_statements(dialect: str) -> list[str]:
    return [f"CREATE INDEX {name} ON audit_archive {columns}" for name, columns in _AUDIT_FILTER_INDEXES]


def audit_filter_index_drop_statements(dialect: str) -> list[str]:
    return [f"DROP INDEX IF EXISTS {name}" for name, _ in _AUDIT_FILTER_INDEXES]
