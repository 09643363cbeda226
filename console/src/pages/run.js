// One run's trace: every node's status, time, inputs, outputs and usage; cancelling a live
// run, and following its events as they happen.
import { useRef, useState } from "preact/hooks";
import { ApiError, get, post, stream } from "../api.js";
import { ErrorBox, html, Json, Loading, seconds, Status, useLoad, when } from "../ui.js";

const LIVE = new Set(["queued", "running"]);
const TERMINAL = new Set(["output", "error"]);
const MAX_RETRIES = 5;

export function Run({ id }) {
  const path = `/v1/runs/${encodeURIComponent(id)}`;
  const [state, reload] = useLoad(() => get(path), [id]);
  const [action, setAction] = useState(null);
  const [events, setEvents] = useState(null);
  const following = useRef(null);

  const cancel = async () => {
    setAction({ busy: "Cancelling…" });
    try {
      await post(`${path}:cancel`);
      setAction({ ok: "The run was cancelled." });
    } catch (error) {
      setAction({ error });
    }
    reload();
  };

  // Follows the run's events to its last frame (`output` or `error`). A stream cut before it
  // is asked for again after the last frame's id, so nothing is shown twice or missed.
  const follow = async () => {
    const controller = new AbortController();
    following.current = controller;
    const seen = [];
    let lastId = "";
    let failures = 0;
    setEvents({ frames: seen, done: false });
    while (!TERMINAL.has(seen.at(-1)?.event)) {
      const progress = seen.length;
      try {
        await stream("GET", lastId ? `${path}/events?after=${lastId}` : `${path}/events`, {
          signal: controller.signal,
          onFrame: (frame) => {
            if (frame.id) lastId = frame.id;
            seen.push(frame);
            setEvents({ frames: [...seen], done: false });
          },
        });
        // An ended run that has no frames left to send ends at once, with nothing.
        if (seen.length === progress) break;
      } catch (error) {
        if (error.name === "AbortError" || error instanceof ApiError) {
          if (error.name !== "AbortError") setAction({ error });
          break;
        }
        failures = seen.length > progress ? 1 : failures + 1;
        if (failures > MAX_RETRIES) {
          setAction({ error });
          break;
        }
        setEvents({ frames: [...seen], done: false, reconnecting: true });
        await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** failures));
      }
    }
    following.current = null;
    setEvents({ frames: [...seen], done: true });
    reload();
  };

  return html`<${Loading} state=${state} what="this run">
    ${(run) => html`<h1>Run <span class="mono">${run.id}</span></h1>
      <dl class="facts">
        <dt>Status</dt><dd id="run-status"><${Status} value=${run.status} /></dd>
        <dt>Workflow</dt><dd><a class="mono" href=${`#/workflows/${encodeURIComponent(run.workflow_id)}`}>${run.workflow_id}</a>, version ${run.version || "—"}</dd>
        <dt>Started</dt><dd>${when(run.started_at)}</dd>
        <dt>Finished</dt><dd>${when(run.finished_at)}</dd>
        <dt>Total time</dt><dd>${seconds(run.total_time)}</dd>
        <dt>Session</dt><dd class="mono">${run.session_id || "—"}</dd>
      </dl>
      <p class="row">
        ${LIVE.has(run.status) && html`<button type="button" class="danger" onClick=${cancel}>Cancel run</button>`}
        <button type="button" class="secondary" disabled=${events && !events.done} onClick=${follow}>
          ${LIVE.has(run.status) ? "Follow its events" : "Replay its events"}</button>
        <button type="button" class="secondary" onClick=${reload}>Refresh</button>
      </p>
      ${action?.busy && html`<p role="status">${action.busy}</p>`}
      ${action?.ok && html`<p class="success" role="status">${action.ok}</p>`}
      <${ErrorBox} error=${action?.error} what="that route" />
      <h2>Inputs</h2><${Json} value=${run.inputs} />
      <h2>Output</h2><${Json} value=${run.output || null} />
      ${run.error && html`<p class="error">Error${run.error_node ? ` at node ${run.error_node}` : ""}: ${run.error}</p>`}
      <h2>Nodes</h2>
      ${(run.nodes ?? []).length === 0
        ? html`<p class="muted">${LIVE.has(run.status) ? "Nodes are recorded when the run ends: follow its events to watch it." : "No nodes ran."}</p>`
        : html`<table>
          <thead><tr><th scope="col">Node</th><th scope="col">Type</th><th scope="col">Status</th>
            <th scope="col">Time spent</th>${withInputs(run) && html`<th scope="col">Inputs</th>`}<th scope="col">Output</th><th scope="col">Usage</th></tr></thead>
          <tbody>${run.nodes.map((n) => html`<tr class="trace-node">
            <td><span class="mono">${n.node_id}</span><br />${n.name}</td><td>${n.type}</td>
            <td><${Status} value=${n.status} />${n.error && html`<br /><span class="error">${n.error}</span>`}</td>
            <td>${seconds(n.time_spend)}</td>
            ${withInputs(run) && html`<td><${Json} value=${n.inputs ?? null} /></td>`}
            <td><${Json} value=${withoutUsage(n.output)} /></td>
            <td><${Json} value=${n.output?.usage ?? n.usage ?? null} /></td></tr>`)}</tbody>
        </table>`}
      ${events && html`<section aria-labelledby="events-title">
        <h2 id="events-title">Events ${events.done ? "(ended)" : events.reconnecting ? "(connection lost: reconnecting…)" : "(following…)"}</h2>
        <ol class="mono">${events.frames.map((f) => html`<li>${f.id && `#${f.id} `}${f.event}: ${JSON.stringify(f.data)}</li>`)}</ol>
      </section>`}
      ${(run.webhook_deliveries ?? []).length > 0 && html`<h2>Webhook deliveries</h2><${Json} value=${run.webhook_deliveries} />`}`}
  <//>`;
}

// Node records carry their inputs only on servers that record them; the column shows then.
function withInputs(run) {
  return (run.nodes ?? []).some((n) => n.inputs !== undefined);
}

function withoutUsage(output) {
  if (!output || typeof output !== "object") return output ?? null;
  const { usage, ...rest } = output;
  return rest;
}
