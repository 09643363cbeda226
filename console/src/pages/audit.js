// The account's administrative changes (GET /v1/audit), newest first, a page at a time.
import { useState } from "preact/hooks";
import { get, query } from "../api.js";
import { html, Json, Loading, useLoad, when } from "../ui.js";

export function Audit() {
  const [pages, setPages] = useState([""]);
  const token = pages[pages.length - 1];
  const [state] = useLoad(() => get(query("/v1/audit", { limit: 50, page_token: token })), [token]);
  return html`<h1>Audit log</h1>
    <${Loading} state=${state} what="the audit log (GET /v1/audit)">
      ${(data) => html`${(data.events ?? []).length === 0 ? html`<p>No changes recorded.</p>` : html`<table>
        <thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Target</th>
          <th scope="col">By key</th><th scope="col">Detail</th></tr></thead>
        <tbody>${data.events.map((e) => html`<tr class="audit-row"><td>${when(e.at)}</td><td>${e.action}</td>
          <td class="mono">${e.target}</td><td class="mono">${e.key_id}</td><td><${Json} value=${e.detail} /></td></tr>`)}</tbody>
      </table>`}
      <p class="row">
        ${pages.length > 1 && html`<button type="button" class="secondary" onClick=${() => setPages(pages.slice(0, -1))}>Newer</button>`}
        ${data.next_page_token && html`<button type="button" class="secondary" onClick=${() => setPages([...pages, data.next_page_token])}>Older</button>`}
      </p>`}
    <//>`;
}
