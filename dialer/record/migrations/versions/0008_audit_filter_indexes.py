"""Indexes for the audit readers' filters run in SQL (GET /v1/audit: kind, actor): issue 18.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from dialer.record.schema import audit_filter_index_drop_statements, audit_filter_index_statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in audit_filter_index_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in audit_filter_index_drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
