"""Evaluations may be measured on a device: each names the device, its delegate, the runtime
and its version, and the sample set (``quantlab evaluate --device``); host evaluations leave
them null.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    """Add evaluations.device, delegate, runtime, runtime_version and sample_set."""
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("device", sa.String(255)))
        batch.add_column(sa.Column("delegate", sa.String(80)))
        batch.add_column(sa.Column("runtime", sa.String(40)))
        batch.add_column(sa.Column("runtime_version", sa.String(80)))
        batch.add_column(sa.Column("sample_set", sa.String(64)))


def downgrade() -> None:
    """Drop the device columns."""
    with op.batch_alter_table("evaluations") as batch:
        for name in ("sample_set", "runtime_version", "runtime", "delegate", "device"):
            batch.drop_column(name)
