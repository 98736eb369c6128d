"""Raw runner output: which files each result keeps (raw_files) and, for stores without a
results folder, their bytes by sha256 (raw_blobs).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    """Create raw_files and raw_blobs."""
    op.create_table(
        "raw_files",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(80), nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("original_size_bytes", sa.BigInteger),
        sa.Column("cap_bytes", sa.BigInteger),
        sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
    )
    op.create_index("ix_raw_files_sha256", "raw_files", ["sha256"])
    op.create_table(
        "raw_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("stored_at", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    """Drop raw_files and raw_blobs (the files in a results folder's raw/ stay)."""
    op.drop_table("raw_blobs")
    op.drop_index("ix_raw_files_sha256", table_name="raw_files")
    op.drop_table("raw_files")
