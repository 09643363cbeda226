"""Keys for teams: api_keys.expires_at, workflows and the rotated-out secret; audit_events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as keys:
        # Keys made before this revision never expire and run every workflow, as they did.
        keys.add_column(sa.Column("expires_at", Timestamp, nullable=True))
        keys.add_column(sa.Column("workflows", sa.JSON(), nullable=True))
        keys.add_column(sa.Column("previous_prefix", String(), nullable=True))
        keys.add_column(sa.Column("previous_hash", String(), nullable=True))
        keys.add_column(sa.Column("previous_until", Timestamp, nullable=True))
        keys.create_index(op.f("ix_api_keys_previous_prefix"), ["previous_prefix"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", String(), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("key_id", String(), nullable=False),
        sa.Column("action", String(), nullable=False),
        sa.Column("target", String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_audit_events_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_account_id_id", "audit_events", ["account_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_account_id_id", table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("api_keys") as keys:
        keys.drop_index(op.f("ix_api_keys_previous_prefix"))
        keys.drop_column("previous_until")
        keys.drop_column("previous_hash")
        keys.drop_column("previous_prefix")
        keys.drop_column("workflows")
        keys.drop_column("expires_at")
