"""An import's consents staged in the record with its rows (import_consents) instead of in Redis: issue 18, Redis
near 0 B per staged row for a consent-column file too.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from dialer.record.contacts_schema import consent_staging_create_statements, consent_staging_drop_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in consent_staging_create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in consent_staging_drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
