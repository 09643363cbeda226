"""Initial schema: accounts, api_keys, workflows, workflow_versions, runs, node_runs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The column types as the models declare them. Timestamps are spelled with their database
# type: the UTCDateTime decorator only converts values in Python, so no import of the models.
String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", String(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("prefix", String(), nullable=False),
        sa.Column("key_hash", String(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_api_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"])
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])

    op.create_table(
        "workflows",
        sa.Column("id", String(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("visibility", String(), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_workflows_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    op.create_index(op.f("ix_workflows_account_id"), "workflows", ["account_id"])

    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_versions_workflow_id_workflows"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint(
            "workflow_id", "version", name=op.f("uq_workflow_versions_workflow_id_version")
        ),
    )

    op.create_table(
        "runs",
        sa.Column("id", String(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("key_id", String(), nullable=True),
        sa.Column("workflow_id", String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("session_id", String(), nullable=True),
        sa.Column("status", String(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_node", String(), nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("total_time", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_runs_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name=op.f("fk_runs_key_id_api_keys")),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_runs_workflow_id_workflows")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_account_id_started_at", "runs", ["account_id", "started_at"])

    op.create_table(
        "node_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", String(), nullable=False),
        sa.Column("node_id", String(), nullable=False),
        sa.Column("node_type", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("status", String(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("time_spend", sa.Float(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_node_runs_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_runs")),
    )
    op.create_index(op.f("ix_node_runs_run_id"), "node_runs", ["run_id"])


def downgrade() -> None:
    # Dependents first; dropping a table drops its indexes.
    for table in ("node_runs", "runs", "workflow_versions", "workflows", "api_keys", "accounts"):
        op.drop_table(table)
