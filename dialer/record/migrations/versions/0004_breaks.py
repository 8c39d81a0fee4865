"""Confirmed discontinuities of a tenant's audit chain after a Redis data loss: audit_breaks (issue 18).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from dialer.record.schema import break_statements, drop_break_statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in break_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_break_statements(op.get_bind().dialect.name):
        op.execute(statement)
