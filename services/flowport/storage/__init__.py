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
    Account,
    ApiKey,
    NodeRun,
    Run,
    SessionTurn,
    Workflow,
    WorkflowVersion,
)
from flowport.storage.run_writer import RunWriter
from flowport.storage.runs import (
    NewRun,
    NodeRunRecord,
    create_run,
    fail_running_runs,
    get_run,
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
    "Account",
    "ApiKey",
    "Database",
    "NewRun",
    "NodeRun",
    "NodeRunRecord",
    "Run",
    "RunWriter",
    "SessionTurn",
    "Workflow",
    "WorkflowVersion",
    "create_api_key",
    "create_run",
    "create_workflow",
    "fail_running_runs",
    "find_api_key",
    "get_account",
    "get_account_by_name",
    "get_or_create_account",
    "get_published_workflow",
    "get_run",
    "get_workflow",
    "list_api_keys",
    "list_workflows",
    "publish_workflow",
    "recent_turns",
    "revoke_api_key",
    "set_credits",
    "spend_credit",
    "spend_credit_left",
    "touch_api_key",
    "update_workflow_draft",
]
