"""Session memory: session_turns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "session_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("session_id", String(), nullable=False),
        sa.Column("run_id", String(), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("assistant", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_session_turns_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_session_turns_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_turns")),
    )
    op.create_index("ix_session_turns_lookup", "session_turns", ["account_id", "session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_session_turns_lookup", table_name="session_turns")
    op.drop_table("session_turns")
