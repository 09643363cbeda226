"""Database tables: accounts, API keys, workflows with their immutable versions, runs, their
logs of events, and the replicas that execute them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import JSON, Column, Field, SQLModel

from flowport.ids import new_id

# Named constraints: SQLite batch migrations can only alter or drop a constraint by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores UTC and reads back aware datetimes; SQLite drops the offset otherwise."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Flowport stores timezone-aware UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json(*, nullable: bool) -> Any:
    # A new Column each time: SQLAlchemy binds a Column to exactly one table.
    return Column(JSON, nullable=nullable)


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: str = Field(default_factory=lambda: new_id("acct"), primary_key=True)
    name: str = Field(unique=True)
    # None means unlimited; each run spends one credit.
    credits: int | None = None
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    # The origins whose web pages may call with the account's keys (CORS).
    allowed_origins: list[str] = Field(default_factory=list, sa_column=_json(nullable=False))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=lambda: new_id("key"), primary_key=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    name: str
    # The visible start of the key (`fp_` + 8), shown in listings and used to find candidates.
    prefix: str = Field(index=True)
    # sha256 hex of the whole key; the plaintext is never stored.
    key_hash: str = Field(unique=True)
    scopes: list[str] = Field(default_factory=list, sa_column=_json(nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # After this the key answers 401 "API key expired"; None: never.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The workflows the key may run; None: every workflow its account may run.
    workflows: list[str] | None = Field(default=None, sa_column=_json(nullable=True))
    # The secret the last rotation replaced, which keeps working until `previous_until`
    # (the rotation's grace): its visible start and digest, as for the current one.
    previous_prefix: str | None = Field(default=None, index=True)
    previous_hash: str | None = None
    previous_until: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class Workflow(SQLModel, table=True):
    __tablename__ = "workflows"

    id: str = Field(default_factory=lambda: new_id("wf", 12), primary_key=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    name: str
    visibility: str = "private"
    # The whole definition as the user last saved it; publishing copies it into a version.
    draft: dict[str, Any] = Field(default_factory=dict, sa_column=_json(nullable=False))
    # 0 until the first publish.
    latest_version: int = 0
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)

    @property
    def status(self) -> str:
        return "published" if self.latest_version > 0 else "draft"


class WorkflowVersion(SQLModel, table=True):
    """A published definition; never updated, so a run can always name what it ran."""

    __tablename__ = "workflow_versions"
    __table_args__ = (sa.UniqueConstraint("workflow_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(foreign_key="workflows.id")
    version: int
    definition: dict[str, Any] = Field(sa_column=_json(nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class WorkflowAlias(SQLModel, table=True):
    """A name (`prod`) for one published version of a workflow; moving it is how a rollback
    is done without publishing again."""

    __tablename__ = "workflow_aliases"
    __table_args__ = (sa.UniqueConstraint("workflow_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(foreign_key="workflows.id")
    name: str
    version: int
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


# A run's status moves forward once: from a live status to a final one, never back.
LIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        # Listing an account's runs, newest first.
        sa.Index("ix_runs_account_id_started_at", "account_id", "started_at"),
        # The reaper's search for live runs of replicas that died.
        sa.Index("ix_runs_status", "status"),
        # The search for ended runs whose webhook was never attempted: runs with one only.
        sa.Index(
            "ix_runs_webhook_finished_at",
            "finished_at",
            sqlite_where=sa.text("webhook_url IS NOT NULL"),
            postgresql_where=sa.text("webhook_url IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="accounts.id")
    key_id: str | None = Field(default=None, foreign_key="api_keys.id")
    workflow_id: str = Field(foreign_key="workflows.id")
    version: int
    session_id: str | None = None
    status: str = "running"
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=_json(nullable=False))
    output: str | None = Field(default=None, sa_type=sa.Text)
    error: str | None = Field(default=None, sa_type=sa.Text)
    error_node: str | None = None
    started_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    total_time: float | None = None
    # The replica executing the run while it is live (replicas.id).
    owner: str | None = None
    # The REST status of the error it failed with (or was cancelled with), when it did.
    error_code: int | None = None
    # Where the run's end is POSTed (the call's, or its workflow's), when anywhere.
    webhook_url: str | None = Field(default=None, sa_type=sa.Text)


class NodeRun(SQLModel, table=True):
    __tablename__ = "node_runs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    node_id: str
    node_type: str
    name: str
    status: str
    started_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    time_spend: float
    inputs: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    output: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    error: str | None = Field(default=None, sa_type=sa.Text)


class SessionTurn(SQLModel, table=True):
    """One turn of a conversation: a run's input and its final output (LinkAI's memory)."""

    __tablename__ = "session_turns"
    # Turns are read newest first, per account and session.
    __table_args__ = (sa.Index("ix_session_turns_lookup", "account_id", "session_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="accounts.id")
    session_id: str
    run_id: str = Field(foreign_key="runs.id")
    user: str = Field(sa_type=sa.Text)
    assistant: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class RunLogEntry(SQLModel, table=True):
    """Consecutive frames of a run's event stream, as SSE text with their `id:` lines: what
    one flush of the run's log appended (a stream of tokens is one entry per flush)."""

    __tablename__ = "run_log"
    __table_args__ = (
        sa.Index("ix_run_log_run_id_first_seq", "run_id", "first_seq"),
        # Retention drops the entries of old days.
        sa.Index("ix_run_log_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str
    # The ids of the first and last frame in `frames`, numbered from 1 within the run.
    first_seq: int
    last_seq: int
    frames: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One attempt to POST a run's end to its webhook."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    attempt: int
    # The receiver's HTTP status; none when it did not answer.
    status_code: int | None = None
    error: str | None = Field(default=None, sa_type=sa.Text)
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class WebhookSecret(SQLModel, table=True):
    """An account's webhook signing secret (`whsec_...`): kept so that it can sign, shown only
    when made."""

    __tablename__ = "webhook_secrets"

    account_id: str = Field(foreign_key="accounts.id", primary_key=True)
    secret: str
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class IdempotencyKey(SQLModel, table=True):
    """A run call's Idempotency-Key: the same key and body of one account within a day are
    the same run."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("account_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="accounts.id")
    key: str
    # A digest of the call's surface, route and body: another body with the key is refused.
    fingerprint: str
    run_id: str
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, index=True)


class Job(SQLModel, table=True):
    """Work for any replica on SQLite (on PostgreSQL, procrastinate's tables hold it): a
    background run to execute, a webhook delivery to attempt."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_run_at", "status", "run_at"),
        # At most one waiting job per lock (as procrastinate's queueing lock): a run is
        # queued once however often asked.
        sa.Index(
            "uq_jobs_lock_todo",
            "lock",
            unique=True,
            sqlite_where=sa.text("status = 'todo'"),
            postgresql_where=sa.text("status = 'todo'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    args: dict[str, Any] = Field(default_factory=dict, sa_column=_json(nullable=False))
    lock: str | None = None
    # todo, doing (claimed by `owner`); a job that ends is deleted.
    status: str = "todo"
    owner: str | None = None
    run_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """An administrative change of an account, written in the transaction that made it."""

    __tablename__ = "audit_events"
    # An account's events, newest first, a page at a time (by id: ids only grow).
    __table_args__ = (sa.Index("ix_audit_events_account_id_id", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="accounts.id")
    at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    # The API key that made the change, or "cli" for the command line on the database.
    key_id: str
    # What happened: key.created, key.rotated, workflow.published, credits.set, ...
    action: str
    # What it happened to: a key's, a workflow's or the account's id.
    target: str
    # The change's parameters; never a secret.
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=_json(nullable=False))


class Replica(SQLModel, table=True):
    """A `flowport serve` process that executes runs: alive while its heartbeat is fresh."""

    __tablename__ = "replicas"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
