"""The record: audit archive, gate decisions, call records, consent ledger, opt-out log (issue 18).

Revision ID: 0001
Revises:
"""

from alembic import op

from dialer.record.schema import create_statements, drop_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
