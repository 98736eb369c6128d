"""Plan files and tags of runs: the plan's text and sha256 on runs, tags in run_tags.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    """Add runs.plan_text and runs.plan_sha256; create run_tags."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("plan_text", sa.Text))
        batch.add_column(sa.Column("plan_sha256", sa.String(64)))
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("tag", sa.String(255), primary_key=True),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag"])


def downgrade() -> None:
    """Drop run_tags and the plan columns."""
    op.drop_index("ix_run_tags_tag", table_name="run_tags")
    op.drop_table("run_tags")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("plan_sha256")
        batch.drop_column("plan_text")
