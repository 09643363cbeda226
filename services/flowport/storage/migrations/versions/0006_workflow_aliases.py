"""Workflow aliases: a name per workflow pointing at one of its published versions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflow_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_aliases_workflow_id_workflows"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_aliases")),
        sa.UniqueConstraint(
            "workflow_id", "name", name=op.f("uq_workflow_aliases_workflow_id_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("workflow_aliases")
