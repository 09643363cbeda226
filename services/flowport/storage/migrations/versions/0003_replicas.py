"""Runs across replicas: replicas, runs.owner, the run log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", String(), nullable=False),
        sa.Column("host", String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    with op.batch_alter_table("runs") as runs:
        # Runs an older version left live have no owner: the reaper fails them as orphans.
        runs.add_column(sa.Column("owner", String(), nullable=True))
        runs.add_column(sa.Column("error_code", sa.Integer(), nullable=True))
        runs.create_index("ix_runs_status", ["status"])
    op.create_table(
        "run_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", String(), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_log")),
    )
    op.create_index("ix_run_log_run_id_first_seq", "run_log", ["run_id", "first_seq"])
    op.create_index("ix_run_log_created_at", "run_log", ["created_at"])


def downgrade() -> None:
    op.drop_table("run_log")
    with op.batch_alter_table("runs") as runs:
        runs.drop_index("ix_runs_status")
        runs.drop_column("error_code")
        runs.drop_column("owner")
    op.drop_table("replicas")
