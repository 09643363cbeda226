// One workflow: its ID, versions and aliases, code to call it, and a form (made from its
// input schema) that runs it as a stream: node logs with timings, tokens, the output.
import { useRef, useState } from "preact/hooks";
import { ApiError, get, post, stream } from "../api.js";
import { CopyButton, ErrorBox, html, Loading, seconds, Status, useLoad, when } from "../ui.js";
import { aliasesFromAudit, aliasText } from "./workflows.js";

export function Workflow({ id }) {
  const path = `/v1/workflows/${encodeURIComponent(id)}`;
  const [state, reload] = useLoad(() => get(path), [id]);
  const [aliases] = useLoad(aliasesFromAudit, [state.data]);
  return html`<${Loading} state=${state} what="this workflow">
    ${(workflow) => html`<h1>${workflow.name}</h1>
      <dl class="facts">
        <dt>ID</dt><dd><code id="workflow-id">${workflow.id}</code> <${CopyButton} text=${workflow.id} label="Copy ID" /></dd>
        <dt>Status</dt><dd><${Status} value=${workflow.status} /></dd>
        <dt>Visibility</dt><dd>${workflow.visibility}</dd>
        <dt>Versions</dt><dd>${versions(workflow.latest_version).join(", ") || "none published"}</dd>
        <dt>Aliases</dt><dd id="workflow-aliases">${aliasText(aliases.data?.get(workflow.id))}</dd>
        <dt>Updated</dt><dd>${when(workflow.updated_at)}</dd>
      </dl>
      <p><a href=${`#/runs?workflow_id=${encodeURIComponent(workflow.id)}`}>This workflow's runs</a></p>
      ${workflow.latest_version > 0 && html`<${Alias} workflow=${workflow} onMoved=${reload} />`}
      ${workflow.latest_version > 0 && html`<${Snippets} id=${id} />`}
      ${workflow.latest_version > 0
        ? html`<${TryIt} workflow=${workflow} />`
        : html`<p class="notice">Publish this workflow to run it.</p>`}`}
  <//>`;
}

function versions(latest) {
  return Array.from({ length: latest || 0 }, (_, i) => latest - i);
}

function Alias({ workflow, onMoved }) {
  const [name, setName] = useState("");
  const [version, setVersion] = useState(String(workflow.latest_version));
  const [result, setResult] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    try {
      const alias = await post(
        `/v1/workflows/${encodeURIComponent(workflow.id)}/aliases/${encodeURIComponent(name)}`,
        { version: Number(version) },
      );
      setResult({ ok: `Alias ${alias.name} now points at version ${alias.version}.` });
      onMoved();
    } catch (error) {
      setResult({ error });
    }
  };
  return html`<section aria-labelledby="alias-title" class="panel">
    <h2 id="alias-title">Point an alias at a version</h2>
    <form onSubmit=${submit} class="row">
      <div><label for="alias-name">Alias name</label>
        <input id="alias-name" type="text" required pattern="[A-Za-z][A-Za-z0-9_\\-]{0,62}" value=${name}
          onInput=${(e) => setName(e.target.value)} /></div>
      <div><label for="alias-version">Version</label>
        <select id="alias-version" value=${version} onChange=${(e) => setVersion(e.target.value)}>
          ${versions(workflow.latest_version).map((v) => html`<option value=${v}>${v}</option>`)}
        </select></div>
      <div><button type="submit">Set alias</button></div>
    </form>
    ${result?.ok && html`<p class="success" role="status">${result.ok}</p>`}
    <${ErrorBox} error=${result?.error} what="aliases (POST /v1/workflows/{id}/aliases/{name})" />
  </section>`;
}

function Snippets({ id }) {
  const [state] = useLoad(() => get(`/v1/workflows/${encodeURIComponent(id)}/snippets`), [id]);
  return html`<section aria-labelledby="snippets-title">
    <h2 id="snippets-title">Call it from code</h2>
    <${Loading} state=${state} what="code snippets (GET /v1/workflows/{id}/snippets)">
      ${(data) => (data.snippets ?? []).map(
        (s) => html`<div class="panel">
          <h3 style="margin:0">${s.lang}</h3>
          <pre aria-label=${`${s.lang} snippet`}>${s.code}</pre>
          <${CopyButton} text=${s.code} label=${`Copy ${s.lang}`} />
        </div>`,
      )}
    <//>
  </section>`;
}

// The input schema of the published version; a server without the schema route gets the
// fields of the draft's `in` node instead, said so on the page.
async function inputSchema(workflow) {
  try {
    const schema = await get(`/v1/workflows/${encodeURIComponent(workflow.id)}/schema`);
    return { schema: schema.input ?? {}, version: schema.version };
  } catch (error) {
    if (!(error instanceof ApiError && error.missingRoute)) throw error;
    const start = (workflow.definition?.nodes ?? []).find((n) => n.type === "in");
    const properties = {};
    const types = { number: "number", boolean: "boolean", object: "object" };
    for (const input of start?.inputs ?? []) {
      properties[input.name] = { type: types[input.type] ?? "string", description: input.description };
    }
    const required = (start?.inputs ?? []).filter((i) => i.required).map((i) => i.name);
    return { schema: { type: "object", properties, required }, fallback: true };
  }
}

// A property's one shape for a form field: JSON Schema's `anyOf` (a number, or text that
// reads as one; null when optional) is shown as its first alternative that is not null.
function shape(spec) {
  const kinds = spec.anyOf ?? [spec];
  const first = kinds.find((k) => k.type !== "null" && !(Array.isArray(k.type) && k.type.every((t) => t === "null"))) ?? {};
  const type = Array.isArray(first.type) ? first.type.find((t) => t !== "null") : first.type;
  return { ...first, type: type ?? "string", description: spec.description, default: spec.default };
}

function fieldType(spec) {
  return shape(spec).type;
}

function TryIt({ workflow }) {
  const [state] = useLoad(() => inputSchema(workflow), [workflow.id]);
  return html`<section aria-labelledby="try-title" class="panel">
    <h2 id="try-title">Try it</h2>
    <${Loading} state=${state} what="the input schema">
      ${(data) => html`
        ${data.fallback && html`<p class="notice">This server has no schema route (GET /v1/workflows/{id}/schema): the form follows the draft's inputs.</p>`}
        <${RunForm} workflow=${workflow} schema=${data.schema} />`}
    <//>
  </section>`;
}

function initialValues(schema) {
  const values = {};
  for (const [name, spec] of Object.entries(schema.properties ?? {})) {
    values[name] = fieldType(spec) === "boolean" ? Boolean(spec.default) : spec.default ?? "";
    if (fieldType(spec) === "object" && typeof values[name] !== "string") {
      values[name] = values[name] === "" ? "" : JSON.stringify(values[name]);
    }
  }
  return values;
}

function RunForm({ workflow, schema }) {
  const [values, setValues] = useState(() => initialValues(schema));
  const [version, setVersion] = useState("");
  const [run, setRun] = useState(null);
  const [formError, setFormError] = useState(null);
  const abort = useRef(null);
  const required = new Set(schema.required ?? []);
  const set = (name, value) => setValues((old) => ({ ...old, [name]: value }));

  const input = () => {
    const out = {};
    for (const [name, spec] of Object.entries(schema.properties ?? {})) {
      const value = values[name];
      const type = fieldType(spec);
      if (type === "boolean") out[name] = value;
      else if (value === "" || value === undefined) continue;
      else if (type === "number" || type === "integer") out[name] = Number(value);
      else if (type === "object") out[name] = JSON.parse(value);
      else out[name] = value;
    }
    return out;
  };

  const submit = async (event) => {
    event.preventDefault();
    setFormError(null);
    let body;
    try {
      body = { input: input(), stream: true };
    } catch (error) {
      setFormError(`An object input is not valid JSON: ${error.message}`);
      return;
    }
    if (version) body.version = /^\d+$/.test(version) ? Number(version) : version;
    const controller = new AbortController();
    abort.current = controller;
    const live = { nodes: [], tokens: "", output: null, error: null, runId: null, done: false };
    const update = () => setRun({ ...live, nodes: [...live.nodes] });
    update();
    try {
      await stream("POST", `/v1/api/workflow/run/${encodeURIComponent(workflow.id)}`, {
        body,
        signal: controller.signal,
        onOpen: (headers) => {
          live.runId = headers.get("x-run-id");
          live.version = headers.get("x-workflow-version");
          update();
        },
        onFrame: (frame) => {
          apply(live, frame);
          update();
        },
      });
    } catch (error) {
      if (error.name !== "AbortError") live.error = { message: error.message, code: error.status };
    }
    live.done = true;
    abort.current = null;
    update();
  };

  const cancel = async () => {
    if (!run?.runId) return;
    try {
      await post(`/v1/runs/${encodeURIComponent(run.runId)}:cancel`);
    } catch (error) {
      setFormError(`Cancel failed: ${error.message}`);
    }
  };

  const properties = Object.entries(schema.properties ?? {});
  return html`<form onSubmit=${submit}>
      ${properties.length === 0 && html`<p class="muted">This workflow takes no inputs.</p>`}
      ${properties.map(([name, spec]) => html`<${Field} name=${name} spec=${spec}
        required=${required.has(name)} value=${values[name]} onChange=${(v) => set(name, v)} />`)}
      <label for="run-version">Version or alias (empty: the newest)</label>
      <input id="run-version" type="text" value=${version} onInput=${(e) => setVersion(e.target.value)} />
      ${formError && html`<p class="error" role="alert">${formError}</p>`}
      <p class="row">
        <button type="submit" disabled=${run && !run.done}>Run (streaming)</button>
        ${run && !run.done && run.runId && html`<button type="button" class="danger" onClick=${cancel}>Cancel run</button>`}
      </p>
    </form>
    ${run && html`<${RunView} run=${run} />`}`;
}

function Field({ name, spec: schema, required, value, onChange }) {
  const id = `input-${name}`;
  const spec = shape(schema);
  const type = spec.type;
  const help = [
    spec.description,
    spec.format === "uri" && "a URL",
    spec.maxLength && `at most ${spec.maxLength} characters`,
  ].filter(Boolean).join("; ");
  const described = help ? `${id}-help` : undefined;
  const label = html`${name}${required ? html` <span aria-hidden="true">*</span><span class="skip">(required)</span>` : ""}`;
  if (type === "boolean") {
    return html`<label class="inline" for=${id}><input id=${id} type="checkbox" checked=${value}
      onChange=${(e) => onChange(e.target.checked)} aria-describedby=${described} />${label}</label>
      ${help && html`<span id=${described} class="muted">${help}</span>`}`;
  }
  const common = { id, required, value, "aria-describedby": described,
    onInput: (e) => onChange(e.target.value) };
  const control = type === "object"
    ? html`<textarea ...${common} style="min-height:5rem" placeholder="{}"></textarea>`
    : html`<input ...${common} type=${type === "number" || type === "integer" ? "number" : "text"}
        step=${type === "number" ? "any" : undefined} maxlength=${spec.maxLength}
        inputmode=${spec.format === "uri" ? "url" : undefined} style="width:100%" />`;
  return html`<div><label for=${id}>${label}</label>${control}
    ${help && html`<div id=${described} class="muted">${help}</div>`}</div>`;
}

// One FlowAI frame into the live view: node starts and finishes, tokens, output, error.
export function apply(live, { event, data }) {
  live.started ??= performance.now();
  if (event === "msg" && data?.Type === "start_node") {
    const at = (performance.now() - live.started) / 1000;
    live.nodes.push({ node: data.Node, msg: data.Msg, status: "running", at, time_spend: null });
  } else if (event === "msg" && data?.Type === "finish_node") {
    const node = live.nodes.findLast((n) => n.node === data.Node && n.status === "running");
    if (node) {
      node.status = "finished";
      node.time_spend = data.Data?.time_spend ?? null;
    }
  } else if (event === "stream") {
    live.tokens += data?.Content ?? "";
  } else if (event === "output") {
    live.output = data;
    live.runId = live.runId ?? data?.run_id;
  } else if (event === "error") {
    live.error = { message: data?.message, code: data?.code, node: data?.Node };
  }
}

export function RunView({ run }) {
  return html`<section aria-labelledby="live-title">
    <h3 id="live-title">${run.done ? "Run finished" : "Running…"}
      ${run.runId && html` <a href=${`#/runs/${encodeURIComponent(run.runId)}`}>trace of ${run.runId}</a>`}</h3>
    ${run.version && html`<p id="run-version-ran">Version ${run.version} ran.</p>`}
    <table>
      <caption class="muted" style="text-align:left">Node log</caption>
      <thead><tr><th scope="col">Node</th><th scope="col">Started</th><th scope="col">Status</th>
        <th scope="col">Started after</th><th scope="col">Time spent</th></tr></thead>
      <tbody>${run.nodes.map((n) => html`<tr class="node-log">
        <td class="mono">${n.node}</td><td>${n.msg}</td><td>${n.status}</td>
        <td>${seconds(n.at)}</td><td>${seconds(n.time_spend)}</td></tr>`)}</tbody>
    </table>
    <h4>Tokens</h4>
    <pre class="tokens" id="run-tokens">${run.tokens}</pre>
    <div role="status" aria-live="polite">
      ${run.output && html`<h4>Output</h4><pre id="run-output">${run.output.output}</pre>
        <p class="muted">Total time ${seconds(run.output.total_time)}</p>`}
      ${run.error && html`<p class="error">Error${run.error.code ? ` ${run.error.code}` : ""}${run.error.node ? ` at node ${run.error.node}` : ""}: ${run.error.message}</p>`}
    </div>
  </section>`;
}
