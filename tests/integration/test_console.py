"""The web console at /console/, in a real browser (Debian's Chromium, headless, driven by
Playwright) against the real stack: sign in, publish, run and watch tokens arrive, read the
trace, create and revoke a key, cancel a live run. Every page is screenshotted into
FLOWPORT_CONSOLE_SCREENSHOTS (default: the test's pytest tmp dir, printed)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flowport.demo import BMI
from flowport.ids import random_token
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack

ASK = {
    "name": "Ask",
    "nodes": [
        {"id": "start", "type": "in", "name": "开始",
         "inputs": [{"name": "question", "type": "text", "required": True},
                    {"name": "polite", "type": "boolean"}]},
        {"id": "ask", "type": "llm", "name": "Ask the model", "prompt": "{{ question }}"},
        {"id": "end", "type": "out", "name": "结束", "output": "{{ ask.output }}"},
    ],
    "edges": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "end"}],
}  # fmt: skip

# The same workflow as a user might upload it: YAML, with a node id used twice.
DUPLICATE_ID_YAML = """\
name: Broken
nodes:
  - id: start
    type: in
    inputs: [{name: q, type: text}]
  - id: start
    type: out
    output: "{{ q }}"
edges: []
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        # Playwright's own browser download is never used: Debian's build, headless.
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox"], headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("FLOWPORT_CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


class Console:
    """One browser tab on the console, which fails the test on a script error or on a
    request to any other origin than the stack's."""

    def __init__(self, browser: Browser, stack: Stack, screenshots: Path) -> None:
        self.stack = stack
        self.screenshots = screenshots
        self.context = browser.new_context(base_url=stack.base_url)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"])
        self.errors: list[str] = []
        self.foreign: list[str] = []
        origin = urlsplit(stack.base_url).netloc
        self.page = self.new_page(origin)

    def new_page(self, origin: str | None = None) -> Page:
        origin = origin or urlsplit(self.stack.base_url).netloc
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "request",
            lambda request: (
                None if urlsplit(request.url).netloc == origin else self.foreign.append(request.url)
            ),
        )
        return page

    def sign_in(self, key: str, page: Page | None = None) -> None:
        page = page or self.page
        page.goto("/console/")
        # By keyboard only: the field has focus from a click on its label, Enter submits.
        page.get_by_label("API key").click()
        page.keyboard.type(key)
        page.keyboard.press("Enter")
        expect(page.get_by_role("navigation", name="Console")).to_be_visible()

    def copy(self, button: str, page: Page | None = None) -> str:
        """Clicks a copy button and returns what it put on the clipboard. The clipboard only
        takes writes from the focused page, so the tab is brought to the front first."""
        page = page or self.page
        page.bring_to_front()
        page.get_by_role("button", name=button).click()
        expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible(timeout=15_000)
        copied: str = page.evaluate("() => navigator.clipboard.readText()")
        return copied

    def shot(self, name: str, page: Page | None = None) -> None:
        page = page or self.page
        every_field_labelled(page)
        page.screenshot(path=self.screenshots / f"{name}.png", full_page=True)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors
        assert self.foreign == [], self.foreign


def every_field_labelled(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.type !== 'hidden' && el.labels.length === 0
                            && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    """An admin key of an account of its own, made by the command line: Playwright's sync API
    keeps an event loop running in this thread, where the stack's asyncio helper cannot."""
    account = f"console-{random_token(8)}"
    created = stack.cli("keys", "create", "--admin", "--account", account)
    assert created.returncode == 0, created.stderr
    with Api(stack.base_url, created.stdout.strip(), account=account) as client:
        yield client


@pytest.fixture
def console(browser: Browser, stack: Stack, screenshots: Path) -> Iterator[Console]:
    tab = Console(browser, stack, screenshots)
    yield tab
    tab.close()


def test_envoy_serves_the_console_files_and_redirects_to_it(stack: Stack) -> None:
    page = httpx.get(f"{stack.base_url}/console/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    script = re.search(r'src="(console\.js\?v=\w+)"', page.text)
    assert script is not None
    bundle = httpx.get(f"{stack.base_url}/console/{script.group(1)}")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "immutable" in bundle.headers["cache-control"]
    # Bigger than Envoy's default 4 KiB limit on direct responses, and whole.
    assert int(bundle.headers["content-length"]) == len(bundle.content) > 4096
    moved = httpx.get(f"{stack.base_url}/console?from=docs")
    assert moved.status_code == 301
    assert moved.headers["location"].endswith("/console/?from=docs")
    assert httpx.get(f"{stack.base_url}/console/index.html").text == page.text
    missing = httpx.get(f"{stack.base_url}/console/nothing.js")
    assert (missing.status_code, missing.text) == (404, "no such file in the console")
    # The API beside it is as strict as before.
    refused = httpx.get(f"{stack.base_url}/v1/keys?x=1")
    assert refused.status_code == 400


def test_a_wrong_key_is_refused_and_a_right_one_lives_in_the_tab_only(
    console: Console, api: Api
) -> None:
    page = console.page
    page.goto("/console/")
    page.get_by_label("API key").fill("fp_" + "x" * 32)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was refused")
    console.shot("sign-in-refused")
    console.sign_in(api.key)
    stored = page.evaluate("() => [sessionStorage.getItem('flowport.key'), localStorage.length]")
    assert stored == [api.key, 0]
    # Another tab of the same browser has no key: it asks again.
    other = console.new_page()
    other.goto("/console/")
    expect(other.get_by_label("API key")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('flowport.key')") is None


def test_publish_shows_errors_at_their_path_then_runs_streaming_and_traces(
    console: Console, api: Api, fake_llm: FakeLlm
) -> None:
    page = console.page
    console.sign_in(api.key)
    expect(page.get_by_role("heading", name="Workflows")).to_be_visible()

    # YAML uploaded with a node id twice: the server's error, at its path and line.
    page.get_by_label("Upload a definition file (JSON or YAML)").set_input_files(
        {"name": "broken.yaml", "mimeType": "text/yaml", "buffer": DUPLICATE_ID_YAML.encode()}
    )
    expect(page.get_by_label("Definition (JSON or YAML)")).to_have_value(DUPLICATE_ID_YAML)
    page.get_by_role("button", name="Save and publish").click()
    problem = page.get_by_role("alert")
    expect(problem).to_contain_text("At nodes[1].id (line 6, column 9): duplicate node id 'start'")
    expect(page.get_by_label("Definition (JSON or YAML)")).to_have_attribute("aria-invalid", "true")
    # Text that is not JSON nor YAML is refused before it is sent.
    page.get_by_label("Definition (JSON or YAML)").fill('{"name": "x", "nodes": [}')
    page.get_by_role("button", name="Save and publish").click()
    expect(problem).to_contain_text("The text is not valid JSON or YAML")
    expect(problem).to_contain_text("At line 1, column 25: ")
    # The caret is put where the problem is.
    definition = page.get_by_label("Definition (JSON or YAML)")
    expect(definition).to_be_focused()
    assert definition.evaluate("(el) => el.selectionStart") == 24
    console.shot("workflows-publish-error")

    page.get_by_label("Definition (JSON or YAML)").fill(json.dumps(ASK, ensure_ascii=False))
    page.get_by_role("button", name="Save and publish").click()
    expect(page.get_by_role("status").filter(has_text="Published")).to_contain_text(
        "Published Ask version 1"
    )
    row = page.get_by_role("row").filter(has_text="Ask")
    expect(row).to_contain_text("published")
    console.shot("workflows")

    row.get_by_role("link", name="Ask").click()
    expect(page.get_by_role("heading", name="Ask", exact=True)).to_be_visible()
    workflow_id = page.locator("#workflow-id").inner_text()
    assert workflow_id.startswith("wf_")
    assert api.get(f"/v1/workflows/{workflow_id}").json()["latest_version"] == 1
    # Code to call it, each snippet copied by its button.
    expect(page.get_by_role("heading", name="curl", exact=True)).to_be_visible()
    copied = console.copy("Copy curl")
    assert f"/v1/api/workflow/run/{workflow_id}" in copied
    assert copied.startswith("curl ")
    console.shot("workflow")

    page.get_by_label("Alias name").fill("prod")
    page.get_by_role("button", name="Set alias").click()
    expect(page.get_by_role("status").filter(has_text="Alias prod")).to_have_text(
        "Alias prod now points at version 1."
    )
    expect(page.locator("#workflow-aliases")).to_have_text("prod → v1")

    # The model holds its answer after two tokens: they are on the page before the output.
    fake_llm.set_reply(["Four", " is", " the", " answer."], pause_after=2)
    # The form follows the input schema: text and a checkbox.
    expect(page.get_by_label("polite")).to_have_attribute("type", "checkbox")
    page.get_by_label("polite").check()
    page.get_by_label("question").fill("What is 2+2?")
    page.get_by_label("Version or alias (empty: the newest)").fill("prod")
    page.get_by_role("button", name="Run (streaming)").click()
    expect(page.locator("#run-version-ran")).to_have_text("Version 1 ran.")
    tokens = page.locator("#run-tokens")
    expect(tokens).to_have_text("Four is")
    expect(page.locator("#run-output")).to_have_count(0)
    expect(page.locator(".node-log").first).to_contain_text("Start node 开始, type in")
    expect(page.locator(".node-log").filter(has_text="Ask the model")).to_contain_text("running")
    console.shot("workflow-run-streaming")
    fake_llm.release()
    expect(page.locator("#run-output")).to_have_text("Four is the answer.")
    expect(tokens).to_have_text("Four is the answer.")
    finished = page.locator(".node-log").filter(has_text="Start node Ask the model, type llm")
    expect(finished).to_contain_text("finished")
    expect(finished).to_contain_text(re.compile(r"finished\d+\.\d{4} s\d+\.\d{4} s"))
    console.shot("workflow-run-done")

    page.get_by_role("link", name=re.compile("trace of run_")).click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    nodes = page.locator(".trace-node")
    expect(nodes).to_have_count(3)
    expect(page.get_by_text('"polite": true').first).to_be_visible()
    llm = nodes.filter(has_text="Ask the model")
    expect(llm).to_contain_text("succeeded")
    expect(llm).to_contain_text("Four is the answer.")
    expect(llm).to_contain_text("total_tokens")
    page.get_by_role("button", name="Replay its events").click()
    expect(page.get_by_role("heading", name="Events (ended)")).to_be_visible()
    expect(page.locator("ol li").last).to_contain_text("output:")
    console.shot("run-trace")


def test_runs_page_filters_by_workflow_and_status_and_opens_a_run(
    console: Console, api: Api
) -> None:
    workflow_id = api.publish(BMI)
    other_id = api.publish({**BMI, "name": "Other"})
    run_id = api.run(workflow_id, {"height": 1.8, "weight": 75}).json()["run_id"]
    other_run = api.run(other_id, {"height": 1.8, "weight": 75}).json()["run_id"]
    console.sign_in(api.key)
    page = console.page
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("link", name=run_id)).to_be_visible()
    expect(page.get_by_role("link", name=other_run)).to_be_visible()
    # The workflow page's link filters by its workflow.
    page.goto(f"/console/#/runs?workflow_id={workflow_id}")
    expect(page.get_by_role("link", name=run_id)).to_be_visible()
    expect(page.get_by_role("link", name=other_run)).to_have_count(0)
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Started after").fill("2000-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=run_id)).to_be_visible()
    console.shot("runs")
    page.get_by_label("Run ID").fill(run_id)
    page.get_by_role("button", name="Open run").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(page.get_by_text("您的BMI值是23.15").first).to_be_visible()


def test_cancel_a_live_run_from_its_page_in_another_tab(
    console: Console, api: Api, fake_llm: FakeLlm
) -> None:
    workflow_id = api.publish(ASK)
    console.sign_in(api.key)
    page = console.page
    fake_llm.set_reply(["Never", " ends"], pause_after=1)
    page.goto(f"/console/#/workflows/{workflow_id}")
    page.get_by_label("question").fill("hold")
    page.get_by_role("button", name="Run (streaming)").click()
    expect(page.locator("#run-tokens")).to_have_text("Never")
    run_id = page.get_by_role("link", name=re.compile("trace of run_")).inner_text()
    run_id = run_id.removeprefix("trace of ")

    watcher = console.new_page()
    console.sign_in(api.key, watcher)
    watcher.goto(f"/console/#/runs/{run_id}")
    expect(watcher.locator("#run-status")).to_have_text("running")
    watcher.get_by_role("button", name="Follow its events").click()
    expect(watcher.locator("ol li").first).to_contain_text("msg:")
    console.shot("run-live", watcher)
    watcher.get_by_role("button", name="Cancel run").click()
    expect(watcher.get_by_role("status").filter(has_text="cancelled")).to_have_text(
        "The run was cancelled."
    )
    expect(watcher.locator("#run-status")).to_have_text("cancelled")
    expect(watcher.get_by_role("heading", name="Events (ended)")).to_be_visible()
    console.shot("run-cancelled", watcher)
    # The tab that started it sees its stream end with the cancel's error.
    expect(page.get_by_text(re.compile("Error 499"))).to_be_visible()
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"


def test_create_a_key_shown_once_then_revoke_it_and_read_the_audit_log(
    console: Console, api: Api, stack: Stack
) -> None:
    workflow_id = api.publish(BMI)
    console.sign_in(api.key)
    page = console.page
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Name").fill("team-a")
    page.get_by_label(re.compile(r"^BMI")).check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text()
    assert re.fullmatch(r"fp_\w{32,}", secret)
    assert console.copy("Copy key") == secret
    row = page.locator(".key-row").filter(has_text="team-a")
    expect(row).to_contain_text(workflow_id)
    expect(row).to_contain_text("never")
    console.shot("keys-created")
    # The new key runs the workflow it is limited to.
    with Api(stack.base_url, secret) as team:
        assert team.run(workflow_id, {"height": 1.8, "weight": 75}).status_code == 200
    page.get_by_role("button", name="I have copied it").click()
    expect(page.locator("#new-key")).to_have_count(0)

    row.get_by_role("button", name="Revoke team-a").click()
    row.get_by_role("button", name="Yes, revoke team-a").click()
    expect(row).to_contain_text("revoked")
    console.shot("keys-revoked")
    with Api(stack.base_url, secret) as team:
        assert team.run(workflow_id, {"height": 1.8, "weight": 75}).status_code == 401

    page.get_by_role("link", name="Audit log").click()
    actions = page.locator(".audit-row")
    expect(actions.first).to_contain_text("key.revoked")
    expect(actions.filter(has_text="team-a")).to_contain_text("key.created")
    console.shot("audit")


def test_account_page_shows_the_credits_left(console: Console, api: Api, stack: Stack) -> None:
    console.sign_in(api.key)
    page = console.page
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#credits")).to_have_text("Unlimited")
    expect(page.get_by_text(api.account, exact=True)).to_be_visible()
    assert stack.cli("accounts", "set-credits", api.account, "25").returncode == 0
    api.run(api.publish(BMI), {"height": 1.8, "weight": 75})
    page.reload()
    expect(page.locator("#credits")).to_have_text("24 left")
    console.shot("account")


def test_keyboard_alone_reaches_the_content_and_every_page(console: Console, api: Api) -> None:
    console.sign_in(api.key)
    page = console.page
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()
    for title, heading in (
        ("Runs", "Runs"),
        ("Keys", "API keys"),
        ("Audit log", "Audit log"),
        ("Account", "Account"),
        ("Workflows", "Workflows"),
    ):
        link = page.get_by_role("navigation", name="Console").get_by_role("link", name=title)
        link.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(link).to_have_attribute("aria-current", "page")
        # The new page's content has the focus, so a screen reader starts reading it.
        expect(page.get_by_role("main")).to_be_focused()
        every_field_labelled(page)
    # Focus is visible: the focused control is outlined.
    page.get_by_label("Definition (JSON or YAML)").focus()
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_a_run_key_signs_in_and_sees_its_runs_but_no_admin_pages(
    console: Console, api: Api, stack: Stack
) -> None:
    workflow_id = api.publish(BMI)
    created = stack.cli("keys", "create", "--account", api.account, "--name", "runner")
    assert created.returncode == 0, created.stderr
    run_key = created.stdout.strip()
    with Api(stack.base_url, run_key) as runner:
        run_id = runner.run(workflow_id, {"height": 1.8, "weight": 75}).json()["run_id"]
    console.sign_in(run_key)
    page = console.page
    expect(page.get_by_text("Signed in (run key: no admin pages)")).to_be_visible()
    # The workflows page needs the admin scope, and says so.
    expect(page.get_by_role("alert").first).to_contain_text("403")
    page.get_by_role("link", name="Runs").click()
    page.get_by_role("link", name=run_id).click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#credits")).to_have_text("Unlimited")
