"""Contacts that left a campaign's dial window: campaign_finals (issue 18: nothing in Redis for them).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from dialer.record.contacts_schema import finals_create_statements, finals_drop_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in finals_create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in finals_drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
