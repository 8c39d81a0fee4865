"""Metered usage in the record: usage_records (issue 19).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from dialer.record.schema import drop_usage_statements, usage_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in usage_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_usage_statements(op.get_bind().dialect.name):
        op.execute(statement)
