// The account's workflows, and publishing a definition pasted or uploaded as JSON or YAML.
import { useState } from "preact/hooks";
import { ApiError, get, post, call } from "../api.js";
import { errorAt, parseDefinition } from "../definition.js";
import { html, Loading, Status, useLoad, when } from "../ui.js";

export function Workflows() {
  const [state, reload] = useLoad(() => get("/v1/workflows"), []);
  return html`<h1>Workflows</h1>
    <${Loading} state=${state} what="workflows">
      ${(data) => html`<${WorkflowTable} workflows=${data.workflows ?? []} />`}
    <//>
    <${Publish} workflows=${state.data?.workflows ?? []} onPublished=${reload} />`;
}

function WorkflowTable({ workflows }) {
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
          <td>${aliasText(w.aliases)}</td>
          <td>${w.visibility}</td>
          <td>${when(w.updated_at)}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

export function aliasText(aliases) {
  if (!aliases || !aliases.length) return "—";
  return aliases.map((a) => `${a.name} → v${a.version}`).join(", ");
}

function Publish({ workflows, onPublished }) {
  const [text, setText] = useState("");
  const [target, setTarget] = useState("");
  const [problem, setProblem] = useState(null);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);

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
      <textarea id="publish-text" spellcheck="false" required value=${text}
        onInput=${(e) => setText(e.target.value)}
        aria-invalid=${problem ? "true" : "false"}
        aria-describedby=${problem ? "publish-problem" : undefined}></textarea>
      ${problem && html`<div id="publish-problem" class="error" role="alert">
        <strong>${problem.kind}</strong><br />
        ${problem.path && html`At <code>${problem.path}</code>`}
        ${problem.line && html` (line ${problem.line}, column ${problem.col})`}
        ${(problem.path || problem.line) && ": "}${problem.message}
      </div>`}
      ${done && html`<p class="success" role="status">
        Published <a href=${`#/workflows/${encodeURIComponent(done.id)}`}>${done.name}</a> version ${done.version}.</p>`}
      <p><button type="submit" disabled=${busy}>Save and publish</button></p>
    </form>
  </section>`;
}
