// Small pieces every page uses.
import { h } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

// `[state, reload]`: state is {loading, data, error}; `load` runs again when a dep changes.
export function useLoad(load, deps) {
  const [state, setState] = useState({ loading: true });
  const run = useCallback(() => {
    let current = true;
    setState((old) => ({ ...old, loading: true }));
    load().then(
      (data) => current && setState({ loading: false, data }),
      (error) => current && setState({ loading: false, error }),
    );
    return () => {
      current = false;
    };
  }, deps);
  useEffect(run, [run]);
  return [state, run];
}

export function ErrorBox({ error, what }) {
  if (!error) return null;
  if (error.missingRoute) {
    return html`<p class="notice" role="status">This server has no ${what} (${error.message}).</p>`;
  }
  const status = error.status ? `${error.status}: ` : "";
  return html`<p class="error" role="alert">${status}${error.message}</p>`;
}

export function Loading({ state, what, children }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} what=${what} />`;
  if (state.loading && state.data === undefined) return html`<p role="status">Loading ${what}…</p>`;
  return children(state.data);
}

export function CopyButton({ text, label = "Copy" }) {
  const [done, setDone] = useState("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone("Copied");
    } catch {
      setDone("Copy failed: select the text and copy it by hand");
    }
  };
  return html`<button type="button" class="secondary" onClick=${copy}>${label}</button>
    <span role="status" class="muted"> ${done}</span>`;
}

export function Status({ value }) {
  return html`<span class=${`status status-${value}`}>${value}</span>`;
}

export function when(timestamp) {
  if (!timestamp) return "—";
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? timestamp : date.toLocaleString();
}

export function seconds(value) {
  return typeof value === "number" ? `${value.toFixed(4)} s` : "—";
}

export function Json({ value }) {
  if (value === undefined || value === null) return html`<span class="muted">—</span>`;
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return html`<pre>${text}</pre>`;
}

// A datetime-local field's value (local time) as RFC 3339 in UTC, or "".
export function rfc3339(local) {
  return local ? new Date(local).toISOString() : "";
}
