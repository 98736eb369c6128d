"""Initial schema: runs, devices, jobs, results, samples, ops, energy samples, evaluations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _job_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"])


def upgrade() -> None:
    """Create every table of schema version 1."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("command", sa.Text),
        sa.Column("git_sha", sa.String(64)),
        sa.Column("tool_versions", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("device_id", sa.String(255), primary_key=True),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("model_path", sa.Text, nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("scheme", sa.String(40)),
        sa.Column("device_id", sa.String(255), nullable=False),
        sa.Column("platform", sa.String(20), nullable=False),
        sa.Column("delegate", sa.String(40), nullable=False),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
    )
    op.create_index("ix_jobs_model_sha256", "jobs", ["model_sha256"])
    op.create_table(
        "results",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("median_ms", sa.Float),
        sa.Column("mean_ms", sa.Float),
        sa.Column("init_ms", sa.Float),
        sa.Column("first_inference_ms", sa.Float),
        sa.Column("peak_memory_mb", sa.Float),
        sa.Column("energy_mj", sa.Float),
        sa.Column("energy_method", sa.String(40)),
        sa.Column("raw", sa.JSON, nullable=False),
        _job_fk(),
    )
    op.create_table(
        "samples",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("repeat", sa.Integer, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("value_ms", sa.Float, nullable=False),
        _job_fk(),
    )
    op.create_table(
        "ops",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("kernel", sa.Text, nullable=False),
        sa.Column("op_type", sa.String(80)),
        sa.Column("delegate", sa.String(80)),
        sa.Column("node_index", sa.Integer),
        sa.Column("avg_ms", sa.Float, nullable=False),
        sa.Column("times_called", sa.Integer, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        _job_fk(),
    )
    op.create_table(
        "energy_samples",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("t_s", sa.Float, nullable=False),
        sa.Column("channel", sa.String(80), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        _job_fk(),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("variant_sha256", sa.String(64), nullable=False),
        sa.Column("scheme", sa.String(40)),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("source_sha256", sa.String(64)),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("reference_value", sa.Float),
        sa.Column("drop", sa.Float),
        sa.Column("max_drop", sa.Float, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_evaluations_variant_sha256", "evaluations", ["variant_sha256"])


def downgrade() -> None:
    """Drop every table."""
    for name in ("evaluations", "energy_samples", "ops", "samples", "results", "jobs",
                 "devices", "runs"):
        op.drop_table(name)
