// The account's runs, newest first, filtered by workflow, status and time; and a run by id.
import { useState } from "preact/hooks";
import { get, query } from "../api.js";
import { ErrorBox, html, rfc3339, seconds, Status, useLoad, when } from "../ui.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

export function Runs({ params }) {
  const [filters, setFilters] = useState({
    workflow_id: params.workflow_id ?? "",
    status: params.status ?? "",
    after: "",
    before: "",
  });
  const [applied, setApplied] = useState(filters);
  const [pages, setPages] = useState([""]);
  const token = pages[pages.length - 1];
  const [workflows] = useLoad(() => get("/v1/workflows").catch(() => ({ workflows: [] })), []);
  const [state] = useLoad(
    () => get(query("/v1/runs", {
      workflow_id: applied.workflow_id,
      status: applied.status,
      after: rfc3339(applied.after),
      before: rfc3339(applied.before),
      page_size: 25,
      page_token: token,
    })),
    [applied, token],
  );
  const set = (name) => (event) => setFilters({ ...filters, [name]: event.target.value });
  const submit = (event) => {
    event.preventDefault();
    setApplied(filters);
    setPages([""]);
  };

  return html`<h1>Runs</h1>
    <form onSubmit=${submit} class="row panel" aria-label="Filter runs">
      <div><label for="filter-workflow">Workflow</label>
        <select id="filter-workflow" value=${filters.workflow_id} onChange=${set("workflow_id")}>
          <option value="">Any workflow</option>
          ${(workflows.data?.workflows ?? []).map((w) => html`<option value=${w.id}>${w.name} (${w.id})</option>`)}
        </select></div>
      <div><label for="filter-status">Status</label>
        <select id="filter-status" value=${filters.status} onChange=${set("status")}>
          <option value="">Any status</option>
          ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select></div>
      <div><label for="filter-after">Started after</label>
        <input id="filter-after" type="datetime-local" value=${filters.after} onInput=${set("after")} /></div>
      <div><label for="filter-before">Started before</label>
        <input id="filter-before" type="datetime-local" value=${filters.before} onInput=${set("before")} /></div>
      <div><button type="submit">Filter</button></div>
    </form>
    ${state.error
      ? html`<${ErrorBox} error=${state.error} what="runs list (GET /v1/runs): open a run by its id below" />`
      : state.loading && !state.data
        ? html`<p role="status">Loading runs…</p>`
        : html`<${RunTable} runs=${state.data?.runs ?? []} />
          <p class="row">
            ${pages.length > 1 && html`<button type="button" class="secondary" onClick=${() => setPages(pages.slice(0, -1))}>Newer runs</button>`}
            ${state.data?.next_page_token && html`<button type="button" class="secondary"
              onClick=${() => setPages([...pages, state.data.next_page_token])}>Older runs</button>`}
          </p>`}
    <${OpenRun} />`;
}

function RunTable({ runs }) {
  if (!runs.length) return html`<p>No runs match.</p>`;
  return html`<table>
    <thead><tr><th scope="col">Run</th><th scope="col">Workflow</th><th scope="col">Version</th>
      <th scope="col">Status</th><th scope="col">Started</th><th scope="col">Total time</th></tr></thead>
    <tbody>${runs.map((r) => html`<tr>
      <td><a class="mono" href=${`#/runs/${encodeURIComponent(r.id)}`}>${r.id}</a></td>
      <td class="mono">${r.workflow_id}</td><td>${r.version || "—"}</td>
      <td><${Status} value=${r.status} /></td><td>${when(r.started_at)}</td>
      <td>${seconds(r.total_time)}</td></tr>`)}</tbody>
  </table>`;
}

function OpenRun() {
  const [id, setId] = useState("");
  const submit = (event) => {
    event.preventDefault();
    location.hash = `#/runs/${encodeURIComponent(id.trim())}`;
  };
  return html`<form onSubmit=${submit} class="row panel" aria-label="Open a run">
    <div><label for="open-run">Run ID</label>
      <input id="open-run" type="text" required placeholder="run_..." value=${id} onInput=${(e) => setId(e.target.value)} /></div>
    <div><button type="submit">Open run</button></div>
  </form>`;
}
