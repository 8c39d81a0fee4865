"""Contacts and their list memberships in the record (issue 18: contacts by the tens of millions).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from dialer.record.contacts_schema import create_statements, drop_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
