"""The record's contact tables (migration 0003): contacts and list memberships.

Unlike the archive tables these are not append-only: an erasure request deletes a person's contacts (the
evidence of the erasure is the audit entry, archived in audit_archive). Not partitioned: a contact has no instant
that retention cuts on; lists are deleted by their owner.

  contacts       one row per imported contact: the columns a campaign's dial window needs (number, country,
                 postal code, state, time zones, priority) and `data`, the whole contact as JSON (names, kept
                 fields, every number) for exports, access requests and agents' screens.
  list_members   (tenant, list, contact): a contact may be on several lists.
  contact_phones (tenant, number, contact): every number of every contact, for data-subject requests.

Migration 0005 adds campaign_finals: one row per contact that left a campaign's dial window (why, when, after how
many calls). The window never reads a contact with a row here again, so Redis forgets it (issue 18: nothing in
Redis for contacts outside a window). No number in it: contact ids and reasons, like the call records.
"""

from __future__ import annotations

# name -> (columns (name, kind), primary key); kinds as in dialer.record.schema
TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "contacts": ([("tenant", "text"), ("id", "text"), ("import_id", "text"), ("campaign", "text"), ("row_no", "int"),
                  ("phone", "text"), ("country", "text"), ("postal_code", "text"), ("state", "text"),
                  ("zones", "text"), ("priority", "int"), ("data", "text")], ("tenant", "id")),
    "list_members": ([("tenant", "text"), ("list_id", "text"), ("contact_id", "text")],
                     ("tenant", "list_id", "contact_id")),
    # every number of every contact (the main one and the others): access and erasure find them all
    "contact_phones": ([("tenant", "text"), ("phone", "text"), ("contact_id", "text")],
                       ("tenant", "phone", "contact_id")),
}
# revision 0005
FINALS_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "campaign_finals": ([("tenant", "text"), ("campaign", "text"), ("contact_id", "text"), ("reason", "text"),
                         ("detail", "text"), ("at", "real"), ("attempts", "int"), ("disposition", "text")],
                        ("tenant", "campaign", "contact_id")),
}
# revision 0006: an import's rows staged by its workers, invisible to every reader until its commit moves them into
# the tables above in one transaction (dialer/contacts/publish.py). `attempt`: one per staging of a chunk, so a
# chunk staged again after its worker died never doubles rows (only the attempt its `done` entry names is
# published; the others are deleted). `import_outcomes`: what the commit found (counts, duplicates' report
# entries), written in its transaction, so a commit that dies after it reports the same outcome once.
STAGING_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "import_contacts": ([("tenant", "text"), ("id", "text"), ("import_id", "text"), ("campaign", "text"),
                         ("row_no", "int"), ("phone", "text"), ("country", "text"), ("postal_code", "text"),
                         ("state", "text"), ("zones", "text"), ("priority", "int"), ("data", "text"),
                         ("attempt", "text"), ("line", "int")], ("tenant", "import_id", "attempt", "row_no")),
    # every number of a staged contact (pos: its place in the contact's phones), for the set-based dedupe
    "import_phones": ([("tenant", "text"), ("import_id", "text"), ("attempt", "text"), ("row_no", "int"),
                       ("pos", "int"), ("contact_id", "text"), ("phone", "text"), ("col", "text"),
                       ("reason", "text"), ("first_row", "int")], ("tenant", "import_id", "attempt", "row_no", "pos")),
    "import_outcomes": ([("tenant", "text"), ("import_id", "text"), ("outcome", "text")], ("tenant", "import_id")),
}
STAGING_INDEXES = (("import_phones", ("tenant", "import_id", "phone", "row_no")),)
# revision 0007: the consents of a consent-column file's rows, staged with them (one per number of the row, pos as
# in import_phones) instead of in Redis; the commit writes those of the published attempts through the fact store
# (the consent ledger and its audit entry), in (row_no, pos) order with its progress in Redis, then deletes them.
CONSENT_STAGING_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "import_consents": ([("tenant", "text"), ("import_id", "text"), ("attempt", "text"), ("row_no", "int"),
                         ("pos", "int"), ("phone", "text"), ("given_at", "text"), ("purpose", "text"),
                         ("written", "int"), ("source", "text"), ("evidence", "text")],
                        ("tenant", "import_id", "attempt", "row_no", "pos")),
}

INDEXES = (("contacts", ("tenant", "campaign", "id")), ("list_members", ("tenant", "contact_id")),
           ("contact_phones", ("tenant", "contact_id")))

_ALL = {**TABLES, **FINALS_TABLES, **STAGING_TABLES, **CONSENT_STAGING_TABLES}
COLUMNS = {name: [c for c, _ in cols] for name, (cols, _) in _ALL.items()}
KEYS = {name: key for name, (_, key) in _ALL.items()}


def create_statements(dialect: str) -> list[str]:
    from dialer.record.schema import table_statements

    return table_statements(dialect, TABLES, INDEXES)


def drop_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in TABLES]


def finals_create_statements(dialect: str) -> list[str]:
    from dialer.record.schema import table_statements

    return table_statements(dialect, FINALS_TABLES, ())


def finals_drop_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in FINALS_TABLES]


def staging_create_statements(dialect: str) -> list[str]:
    from dialer.record.schema import table_statements

    # the duplicates the commit's dedupe marked (few): counted, reported and narrowed without a scan of the rest
    return [*table_statements(dialect, STAGING_TABLES, STAGING_INDEXES),
            "CREATE INDEX import_phones_marked ON import_phones (tenant, import_id, row_no) WHERE reason IS NOT NULL"]


def staging_drop_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in STAGING_TABLES]


# an erasure deletes the staged consents naming the number in every import (dialer.record.contacts.erase_number),
# also after the commit deleted import_phones, where it finds an import's staged rows
CONSENT_STAGING_INDEXES = (("import_consents", ("tenant", "phone")),)


def consent_staging_create_statements(dialect: str) -> list[str]:
    from dialer.record.schema import table_statements

    return table_statements(dialect, CONSENT_STAGING_TABLES, CONSENT_STAGING_INDEXES)


def consent_staging_drop_statements(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {name}" for name in CONSENT_STAGING_TABLES]
