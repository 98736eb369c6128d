"""Tables of the results store, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

Change it only together with a new migration in ``migrations/versions``;
tests/test_store.py checks that the migrated database matches this metadata.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False),  # running|done|interrupted|incomplete
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("command", sa.Text),
    sa.Column("git_sha", sa.String(64)),
    sa.Column("tool_versions", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("plan_text", sa.Text),  # the plan file of `bench --plan`, byte for byte
    sa.Column("plan_sha256", sa.String(64)),
    # who runs it (harness/store/owner.py): the process that made or last resumed it, and
    # when it last beat, on the database's clock; --resume refuses a run that is still live
    sa.Column("owner_host", sa.String(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_started_at", sa.String(40)),  # the process's start (pid reuse)
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
)

run_tags = sa.Table(
    "run_tags",
    metadata,
    # `bench --tag nightly --tag git=$SHA`: history filters and baselines find runs by tag
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("tag", sa.String(255), primary_key=True, index=True),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("device_id", sa.String(255), primary_key=True),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # the Job record
    sa.Column("model_path", sa.Text, nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("scheme", sa.String(40)),
    sa.Column("device_id", sa.String(255), nullable=False),
    sa.Column("platform", sa.String(20), nullable=False),
    sa.Column("delegate", sa.String(40), nullable=False),
    sa.Column("threads", sa.Integer, nullable=False),
    # pending | running | ok | failed | skipped | interrupted
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
)

results = sa.Table(
    "results",
    metadata,
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
    sa.Column("raw", sa.JSON, nullable=False),  # RawResult without samples and ops
    sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("repeat", sa.Integer, primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("value_ms", sa.Float, nullable=False),
    sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
)

ops = sa.Table(
    "ops",
    metadata,
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
    sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
)

energy_samples = sa.Table(
    "energy_samples",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(20), nullable=False),  # baseline | load
    sa.Column("t_s", sa.Float, nullable=False),
    sa.Column("channel", sa.String(80), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("variant_sha256", sa.String(64), nullable=False, index=True),
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
    # measured on a device (`evaluate --device`, revision 0005); null for the host's
    sa.Column("device", sa.String(255)),
    sa.Column("delegate", sa.String(80)),
    sa.Column("runtime", sa.String(40)),
    sa.Column("runtime_version", sa.String(80)),
    sa.Column("sample_set", sa.String(64)),  # sha256 of the sample indices
)

raw_files = sa.Table(
    "raw_files",
    metadata,
    # which raw outputs (by content) a job's result keeps; `quantlab gc` keeps these
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(80), nullable=False),
    sa.Column("truncated", sa.Boolean, nullable=False),
    sa.Column("original_size_bytes", sa.BigInteger),
    sa.Column("cap_bytes", sa.BigInteger),
    sa.ForeignKeyConstraint(["run_id", "job_id"], ["jobs.run_id", "jobs.job_id"]),
)

raw_blobs = sa.Table(
    "raw_blobs",
    metadata,
    # the raw bytes by sha256, for stores without a results folder (PostgreSQL, a sqlite://
    # URL); a SQLite results folder keeps them as files in raw/ instead (harness/store/raw.py)
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("stored_at", sa.String(40), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
