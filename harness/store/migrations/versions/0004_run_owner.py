"""Runs carry their owner (host, pid, process start time) and a heartbeat, so that
``bench --resume`` can refuse a run another process is still measuring.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    """Add runs.owner_host, owner_pid, owner_started_at and heartbeat_at (null for older runs)."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner_host", sa.String(255)))
        batch.add_column(sa.Column("owner_pid", sa.Integer))
        batch.add_column(sa.Column("owner_started_at", sa.String(40)))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Drop the owner and heartbeat columns."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner_started_at")
        batch.drop_column("owner_pid")
        batch.drop_column("owner_host")
