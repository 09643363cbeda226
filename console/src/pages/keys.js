// The account's keys: create one (its secret shown once), list, revoke; expiry and the
// workflows a key is limited to.
import { useState } from "preact/hooks";
import { call, get, post } from "../api.js";
import { CopyButton, ErrorBox, html, Loading, rfc3339, useLoad, when } from "../ui.js";

export function Keys() {
  const [state, reload] = useLoad(() => get("/v1/keys"), []);
  const [workflows] = useLoad(() => get("/v1/workflows").catch(() => ({ workflows: [] })), []);
  return html`<h1>API keys</h1>
    <${Create} workflows=${workflows.data?.workflows ?? []} onCreated=${reload} />
    <${Loading} state=${state} what="keys">
      ${(data) => html`<${KeyTable} keys=${data.keys ?? []} onRevoked=${reload} />`}
    <//>`;
}

function Create({ workflows, onCreated }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState({ run: true, admin: false });
  const [expires, setExpires] = useState("");
  const [allowed, setAllowed] = useState([]);
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);

  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    const body = { name, scopes: Object.keys(scopes).filter((s) => scopes[s]) };
    if (expires) body.expires_at = rfc3339(expires);
    if (allowed.length) body.workflows = allowed;
    try {
      setCreated(await post("/v1/keys", body));
      setName("");
      onCreated();
    } catch (failure) {
      setError(failure);
    }
  };
  const toggle = (id) => setAllowed(allowed.includes(id) ? allowed.filter((w) => w !== id) : [...allowed, id]);

  return html`<section aria-labelledby="create-key-title" class="panel">
    <h2 id="create-key-title">Create a key</h2>
    <form onSubmit=${submit}>
      <label for="key-name">Name</label>
      <input id="key-name" type="text" required maxlength="100" value=${name} onInput=${(e) => setName(e.target.value)} />
      <fieldset>
        <legend>Scopes</legend>
        ${["run", "admin"].map((s) => html`<label class="inline" for=${`scope-${s}`}>
          <input id=${`scope-${s}`} type="checkbox" checked=${scopes[s]}
            onChange=${(e) => setScopes({ ...scopes, [s]: e.target.checked })} />${s}</label>`)}
      </fieldset>
      <label for="key-expires">Expires (optional, your local time)</label>
      <input id="key-expires" type="datetime-local" value=${expires} onInput=${(e) => setExpires(e.target.value)} />
      ${workflows.length > 0 && html`<fieldset>
        <legend>May run only these workflows (none ticked: every workflow; keys without admin only)</legend>
        ${workflows.map((w) => html`<label class="inline" for=${`allow-${w.id}`}>
          <input id=${`allow-${w.id}`} type="checkbox" checked=${allowed.includes(w.id)} onChange=${() => toggle(w.id)} />
          ${w.name} <span class="mono muted">${w.id}</span></label>`)}
      </fieldset>`}
      <${ErrorBox} error=${error} what="that route" />
      <p><button type="submit">Create key</button></p>
    </form>
    ${created && html`<div class="success" role="status">
      <p><strong>Key ${created.name} created.</strong> Copy it now: it is shown this once and never again.</p>
      <p><code class="secret" id="new-key">${created.key}</code></p>
      <${CopyButton} text=${created.key} label="Copy key" />
      <button type="button" class="secondary" onClick=${() => setCreated(null)}>I have copied it</button>
    </div>`}
  </section>`;
}

function KeyTable({ keys, onRevoked }) {
  const [confirming, setConfirming] = useState(null);
  const [error, setError] = useState(null);
  const revoke = async (key) => {
    setError(null);
    try {
      await call("DELETE", `/v1/keys/${encodeURIComponent(key.id)}`);
      setConfirming(null);
      onRevoked();
    } catch (failure) {
      setError(failure);
    }
  };
  if (!keys.length) return html`<p>No keys.</p>`;
  return html`<${ErrorBox} error=${error} what="that route" />
    <table>
    <caption class="muted" style="text-align:left">Newest first; secrets are never shown again</caption>
    <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Scopes</th>
      <th scope="col">Workflows</th><th scope="col">Created</th><th scope="col">Last used</th>
      <th scope="col">Expires</th><th scope="col">State</th><th scope="col"><span class="skip">Actions</span></th></tr></thead>
    <tbody>${keys.map((k) => html`<tr class="key-row" data-key-id=${k.id}>
      <td>${k.name}</td><td class="mono">${k.prefix}…</td><td>${(k.scopes ?? []).join(", ")}</td>
      <td class="mono">${(k.workflows ?? []).length ? k.workflows.join(", ") : "all"}</td>
      <td>${when(k.created_at)}</td><td>${when(k.last_used_at)}</td>
      <td>${k.expires_at ? when(k.expires_at) : "never"}</td>
      <td>${k.revoked ? html`<span class="status status-failed">revoked</span>` : expired(k) ? "expired" : "active"}</td>
      <td>${!k.revoked && (confirming === k.id
        ? html`<span role="group" aria-label=${`Revoke ${k.name}?`}>
            <button type="button" class="danger" onClick=${() => revoke(k)}>Yes, revoke ${k.name}</button>
            <button type="button" class="secondary" onClick=${() => setConfirming(null)}>Keep it</button></span>`
        : html`<button type="button" class="secondary" aria-label=${`Revoke ${k.name}`} onClick=${() => setConfirming(k.id)}>Revoke</button>`)}</td>
    </tr>`)}</tbody>
  </table>`;
}

function expired(key) {
  return key.expires_at && new Date(key.expires_at) < new Date();
}
