// The account's run credits. Flowport has no REST route for an account (credits are set
// with `flowport accounts set-credits`); what the console can show is the audit log's
// record of the last time they were set.
import { get, query } from "../api.js";
import { html, Loading, useLoad, when } from "../ui.js";

async function lastCredits() {
  let token = "";
  for (let page = 0; page < 20; page++) {
    const data = await get(query("/v1/audit", { limit: 500, page_token: token }));
    const found = (data.events ?? []).find((e) => e.action === "credits.set");
    if (found || !data.next_page_token) return found ?? null;
    token = data.next_page_token;
  }
  return null;
}

export function Account() {
  const [state] = useLoad(lastCredits, []);
  return html`<h1>Account</h1>
    <p class="notice">This server has no REST route for an account's remaining credits: the
      operator sets them with <code>flowport accounts set-credits NAME N</code>, each run
      spends one, and a run without credits is refused (402, LinkAI 406).</p>
    <h2>Run credits</h2>
    <${Loading} state=${state} what="the audit log (GET /v1/audit)">
      ${(event) => event === null
        ? html`<p id="credits">Unlimited: credits were never set for this account.</p>`
        : html`<p id="credits">Last set to <strong>${event.detail?.credits ?? "unlimited"}</strong>
            on ${when(event.at)} (the remaining number is not shown by this server).</p>`}
    <//>`;
}
