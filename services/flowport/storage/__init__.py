"""Flowport's storage: tables, migrations and the data functions the service calls."""

from flowport.storage.accounts import (
    get_account,
    get_account_by_name,
    get_or_create_account,
    set_credits,
    spend_credit,
    spend_credit_left,
)
from flowport.storage.api_keys import (
    create_api_key,
    find_api_key,
    list_api_keys,
    revoke_api_key,
    touch_api_key,
)
from flowport.storage.database import Database
from flowport.storage.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    Account,
    ApiKey,
    NodeRun,
    Replica,
    Run,
    RunLogEntry,
    SessionTurn,
    Workflow,
    WorkflowVersion,
)
from flowport.storage.recorder import Begun, LogEntry, Recorder
from flowport.storage.replicas import (
    fail_orphaned_runs,
    live_replicas,
    register_replica,
    remove_replica,
    renew_lease,
)
from flowport.storage.run_log import append_frame, expire_log, last_seq, log_after
from flowport.storage.runs import (
    NewRun,
    NodeRunRecord,
    create_run,
    get_run,
    run_status,
)
from flowport.storage.sessions import recent_turns
from flowport.storage.workflows import (
    create_workflow,
    get_published_workflow,
    get_workflow,
    list_workflows,
    publish_workflow,
    update_workflow_draft,
)

__all__ = [
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "Account",
    "ApiKey",
    "Begun",
    "Database",
    "LogEntry",
    "NewRun",
    "NodeRun",
    "NodeRunRecord",
    "Recorder",
    "Replica",
    "Run",
    "RunLogEntry",
    "SessionTurn",
    "Workflow",
    "WorkflowVersion",
    "append_frame",
    "create_api_key",
    "create_run",
    "create_workflow",
    "expire_log",
    "fail_orphaned_runs",
    "find_api_key",
    "get_account",
    "get_account_by_name",
    "get_or_create_account",
    "get_published_workflow",
    "get_run",
    "get_workflow",
    "last_seq",
    "list_api_keys",
    "list_workflows",
    "live_replicas",
    "log_after",
    "publish_workflow",
    "recent_turns",
    "register_replica",
    "remove_replica",
    "renew_lease",
    "revoke_api_key",
    "run_status",
    "set_credits",
    "spend_credit",
    "spend_credit_left",
    "touch_api_key",
    "update_workflow_draft",
]
