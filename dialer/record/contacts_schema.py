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
INDEXES = (("contacts", ("tenant", "campaign", "id")), ("list_members", ("tenant", "contact_id")),
           ("contact_phones", ("tenant", "contact_id")))

COLUMNS = {name: [c for c, _ in cols] for name, (cols, _) in {**TABLES, **FINALS_TABLES}.items()}
KEYS = {name: key for name, (_, key) in {**TABLES, **FINALS_TABLES}.items()}


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
