// The caller's account and the run credits it has left (GET /v1/account). A server without
// that route still has the audit log's record of the last time credits were set.
import { ApiError, get, query } from "../api.js";
import { html, Loading, useLoad, when } from "../ui.js";

async function lastCreditsSet() {
  let token = "";
  for (let page = 0; page < 20; page++) {
    const data = await get(query("/v1/audit", { limit: 500, page_token: token }));
    const found = (data.events ?? []).find((e) => e.action === "credits.set");
    if (found || !data.next_page_token) return found ?? null;
    token = data.next_page_token;
  }
  return null;
}

async function account() {
  try {
    return { account: await get("/v1/account") };
  } catch (error) {
    if (!(error instanceof ApiError && error.missingRoute)) throw error;
    return { lastSet: await lastCreditsSet() };
  }
}

export function Account() {
  const [state] = useLoad(account, []);
  return html`<h1>Account</h1>
    <${Loading} state=${state} what="the account">
      ${({ account, lastSet }) => account
        ? html`<dl class="facts">
            <dt>Name</dt><dd>${account.name}</dd>
            <dt>ID</dt><dd class="mono">${account.id}</dd>
            <dt>Created</dt><dd>${when(account.created_at)}</dd>
            <dt>Run credits</dt><dd id="credits">${account.credits === undefined
              ? "Unlimited"
              : `${Number(account.credits).toLocaleString()} left`}</dd>
          </dl>
          <p class="muted">Each run spends one credit; a run without credits is refused (402,
            LinkAI 406). The operator sets them with <code>flowport accounts set-credits NAME N</code>.</p>`
        : html`<p class="notice">This server has no account route (GET /v1/account): the audit log tells when credits were last set, not how many are left.</p>
          <p id="credits">${lastSet === null
            ? "Unlimited: credits were never set for this account."
            : html`Last set to <strong>${lastSet.detail?.credits ?? "unlimited"}</strong> on ${when(lastSet.at)}.`}</p>`}
    <//>`;
}
