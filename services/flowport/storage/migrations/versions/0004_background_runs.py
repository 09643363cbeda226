"""Background runs, webhooks, idempotency: runs.webhook_url, webhook_deliveries,
webhook_secrets, idempotency_keys, jobs (SQLite's queue) and, on PostgreSQL, procrastinate's
schema (its queue).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)
WAITING = sa.text("status = 'todo'")


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
    with_webhook = sa.text("webhook_url IS NOT NULL")
    op.create_index(
        "ix_runs_webhook_finished_at",
        "runs",
        ["finished_at"],
        sqlite_where=with_webhook,
        postgresql_where=with_webhook,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(op.f("ix_webhook_deliveries_run_id"), "webhook_deliveries", ["run_id"])
    op.create_table(
        "webhook_secrets",
        sa.Column("account_id", String(), nullable=False),
        sa.Column("secret", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_webhook_secrets_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_webhook_secrets")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("key", String(), nullable=False),
        sa.Column("fingerprint", String(), nullable=False),
        sa.Column("run_id", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_idempotency_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("account_id", "key", name=op.f("uq_idempotency_keys_account_id_key")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", String(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("lock", String(), nullable=True),
        sa.Column("status", String(), nullable=False),
        sa.Column("owner", String(), nullable=True),
        sa.Column("run_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_status_run_at", "jobs", ["status", "run_at"])
    op.create_index(
        "uq_jobs_lock_todo",
        "jobs",
        ["lock"],
        unique=True,
        sqlite_where=WAITING,
        postgresql_where=WAITING,
    )
    if op.get_bind().dialect.name == "postgresql":
        # procrastinate's schema as the locked release ships it: its tables, types and
        # functions (moving procrastinate to a release with schema changes takes a migration
        # that applies its migration files).
        schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text()
        # Straight to the driver, without parameters: the SQL holds `%` of its own.
        op.get_bind().connection.cursor().execute(schema)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("procrastinate_events", "procrastinate_periodic_defers",
                      "procrastinate_jobs", "procrastinate_workers"):  # fmt: skip
            op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.drop_index("uq_jobs_lock_todo", table_name="jobs")
    op.drop_index("ix_jobs_status_run_at", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("webhook_secrets")
    op.drop_index(op.f("ix_webhook_deliveries_run_id"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_runs_webhook_finished_at", table_name="runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("webhook_url")
