// The account's workflows, and publishing a definition pasted or uploaded as JSON or YAML.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { ApiError, call, get, post, query } from "../api.js";
import { errorAt, parseDefinition } from "../definition.js";
import { html, Loading, Status, useLoad, when } from "../ui.js";

export function Workflows() {
  const [state, reload] = useLoad(() => get("/v1/workflows"), []);
  const [aliases] = useLoad(aliasesFromAudit, [state.data]);
  return html`<h1>Workflows</h1>
    <${Loading} state=${state} what="workflows">
      ${(data) => html`<${WorkflowTable} workflows=${data.workflows ?? []} aliases=${aliases.data} />`}
    <//>
    <${Publish} workflows=${state.data?.workflows ?? []} onPublished=${reload} />`;
}

// Flowport lists no aliases: they are read from the audit log, where every move is recorded
// (`workflow.alias_moved`), the newest move of each alias first.
export async function aliasesFromAudit() {
  const found = new Map();
  let token = "";
  for (let page = 0; page < 10; page++) {
    const data = await get(query("/v1/audit", { limit: 500, page_token: token }));
    for (const event of data.events ?? []) {
      if (event.action !== "workflow.alias_moved") continue;
      const names = found.get(event.target) ?? new Map();
      if (!names.has(event.detail?.name)) names.set(event.detail?.name, event.detail?.version);
      found.set(event.target, names);
    }
    token = data.next_page_token;
    if (!token) break;
  }
  return found;
}

function WorkflowTable({ workflows, aliases }) {
  if (!workflows.length) return html`<p>No workflows yet: publish one below.</p>`;
  return html`<table>
    <caption class="muted" style="text-align:left">Newest first</caption>
    <thead><tr><th scope="col">Name</th><th scope="col">ID</th><th scope="col">Status</th>
      <th scope="col">Latest version</th><th scope="col">Aliases</th><th scope="col">Visibility</th>
      <th scope="col">Updated</th></tr></thead>
    <tbody>
      ${workflows.map(
        (w) => html`<tr>
          <td><a href=${`#/workflows/${encodeURIComponent(w.id)}`}>${w.name}</a></td>
          <td class="mono">${w.id}</td>
          <td><${Status} value=${w.status} /></td>
          <td>${w.latest_version || "—"}</td>
          <td>${aliasText(aliases?.get(w.id))}</td>
          <td>${w.visibility}</td>
          <td>${when(w.updated_at)}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

export function aliasText(aliases) {
  if (!aliases || !aliases.size) return "—";
  return [...aliases].sort().map(([name, version]) => `${name} → v${version}`).join(", ");
}

function Publish({ workflows, onPublished }) {
  const [text, setText] = useState("");
  const [target, setTarget] = useState("");
  const [problem, setProblem] = useState(null);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);
  const editor = useRef(null);
  // The caret goes to where the problem is, so that it can be fixed at once; in the same
  // task as the message, so that nothing typed after it is shown lands elsewhere.
  useLayoutEffect(() => {
    if (problem?.offset === undefined || !editor.current) return;
    editor.current.focus();
    editor.current.setSelectionRange(problem.offset, problem.offset);
  }, [problem]);

  const upload = async (event) => {
    const file = event.target.files?.[0];
    if (file) setText(await file.text());
  };

  const submit = async (event) => {
    event.preventDefault();
    setProblem(null);
    setDone(null);
    const parsed = parseDefinition(text);
    if (parsed.error) {
      setProblem({ ...parsed.error, kind: "The text is not valid JSON or YAML" });
      return;
    }
    setBusy(true);
    try {
      const saved = target
        ? await call("PUT", `/v1/workflows/${encodeURIComponent(target)}`, parsed.value)
        : await post("/v1/workflows", parsed.value);
      const published = await post(`/v1/workflows/${encodeURIComponent(saved.id)}:publish`);
      setDone({ id: saved.id, name: saved.name, version: published.version });
      onPublished();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 400) {
        setProblem({ ...errorAt(parsed, failure.message), kind: "The server refused the definition" });
      } else {
        setProblem({ path: null, message: failure.message, kind: `Publishing failed (${failure.status ?? "network"})` });
      }
    } finally {
      setBusy(false);
    }
  };

  return html`<section aria-labelledby="publish-title" class="panel">
    <h2 id="publish-title">Publish a workflow</h2>
    <form onSubmit=${submit}>
      <label for="publish-target">Workflow</label>
      <select id="publish-target" value=${target} onChange=${(e) => setTarget(e.target.value)}>
        <option value="">A new workflow</option>
        ${workflows.map((w) => html`<option value=${w.id}>New version of ${w.name} (${w.id})</option>`)}
      </select>
      <label for="publish-file">Upload a definition file (JSON or YAML)</label>
      <input id="publish-file" type="file" accept=".json,.yaml,.yml,application/json,application/yaml,text/yaml" onChange=${upload} />
      <label for="publish-text">Definition (JSON or YAML)</label>
      <textarea id="publish-text" ref=${editor} spellcheck="false" required value=${text}
        onInput=${(e) => setText(e.target.value)}
        aria-invalid=${problem ? "true" : "false"}
        aria-describedby=${problem ? "publish-problem" : undefined}></textarea>
      ${problem && html`<div id="publish-problem" class="error" role="alert">
        <strong>${problem.kind}</strong><br />
        ${problem.path ? html`At <code>${problem.path}</code>` : problem.line && "At"}
        ${problem.line && html` ${problem.path ? "(" : ""}line ${problem.line}, column ${problem.col}${problem.path ? ")" : ""}`}
        ${(problem.path || problem.line) && ": "}${problem.message}
      </div>`}
      ${done && html`<p class="success" role="status">
        Published <a href=${`#/workflows/${encodeURIComponent(done.id)}`}>${done.name}</a> version ${done.version}.</p>`}
      <p><button type="submit" disabled=${busy}>Save and publish</button></p>
    </form>
  </section>`;
}
