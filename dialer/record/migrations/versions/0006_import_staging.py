"""An import's rows staged in the record by its workers (import_contacts, import_phones) and its commit's outcome
(import_outcomes): issue 18, a 1 M-row import without Redis holding its rows.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from dialer.record.contacts_schema import staging_create_statements, staging_drop_statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in staging_create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in staging_drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
