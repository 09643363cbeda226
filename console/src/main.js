// Flowport's web console: one page, routed by the URL's fragment (#/workflows, #/runs/ID),
// so Envoy serves three files and nothing else.
import { render } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, session } from "./api.js";
import { html } from "./ui.js";
import { Workflows } from "./pages/workflows.js";
import { Workflow } from "./pages/workflow.js";
import { Runs } from "./pages/runs.js";
import { Run } from "./pages/run.js";
import { Keys } from "./pages/keys.js";
import { Audit } from "./pages/audit.js";
import { Account } from "./pages/account.js";

const PAGES = [
  { path: "workflows", title: "Workflows", page: Workflows, detail: Workflow },
  { path: "runs", title: "Runs", page: Runs, detail: Run },
  { path: "keys", title: "Keys", page: Keys },
  { path: "audit", title: "Audit log", page: Audit },
  { path: "account", title: "Account", page: Account },
];

// `#/runs/ID?status=failed`: the page, an id, and the page's own parameters.
function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [section = "workflows", ...rest] = path.split("/");
  const found = PAGES.find((p) => p.path === section) ?? PAGES[0];
  const id = rest.length && rest[0] ? decodeURIComponent(rest.join("/")) : null;
  return { ...found, id, params: Object.fromEntries(new URLSearchParams(search)) };
}

function SignIn({ onSignedIn }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    session.signIn(key.trim());
    try {
      // Any route proves the key; a run-only key is 403 here and may still read its runs.
      await get("/v1/workflows");
      onSignedIn({ admin: true });
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 403) {
        onSignedIn({ admin: false });
      } else {
        session.signOut();
        setError(failure.status === 401 ? `That key was refused: ${failure.message}` : failure.message);
      }
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main">
    <h1>Sign in to Flowport</h1>
    <form onSubmit=${submit} class="panel" style="max-width:32rem">
      <label for="signin-key">API key</label>
      <input id="signin-key" type="password" autocomplete="off" spellcheck="false" required
        style="width:100%" value=${key} onInput=${(e) => setKey(e.target.value)}
        aria-describedby="signin-help" aria-invalid=${error ? "true" : "false"} />
      <p id="signin-help" class="muted">The key is kept in this tab's session storage only, and
        forgotten when the tab closes or you sign out. An admin key shows every page.</p>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
  </main>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(session.key ? { admin: null } : null);
  const [current, setCurrent] = useState(route());
  const main = useRef(null);
  useEffect(() => {
    const changed = () => setCurrent(route());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  // Keyboard and screen-reader users land on the new page's content; in the same task as
  // the page itself, so that a field focused on the new page keeps its focus.
  useLayoutEffect(() => {
    document.title = `${current.title} · Flowport console`;
    main.current?.focus();
  }, [current.path, current.id]);

  if (!signedIn) return html`<${SignIn} onSignedIn=${setSignedIn} />`;
  const signOut = () => {
    session.signOut();
    setSignedIn(null);
  };
  const Page = current.id !== null && current.detail ? current.detail : current.page;
  return html`<a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); main.current?.focus(); }}>Skip to content</a>
    <header>
      <span class="brand">Flowport console</span>
      <nav aria-label="Console">
        <ul>
          ${PAGES.map(
            (p) => html`<li><a href=${`#/${p.path}`}
              aria-current=${p.path === current.path ? "page" : undefined}>${p.title}</a></li>`,
          )}
        </ul>
      </nav>
      <div class="who">
        <span>Signed in${signedIn.admin === false ? " (run key: no admin pages)" : ""}</span>
        <button type="button" class="secondary" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <main id="main" tabindex="-1" ref=${main}>
      <${Page} id=${current.id} params=${current.params} key=${location.hash} />
    </main>`;
}

render(html`<${App} />`, document.getElementById("app"));
