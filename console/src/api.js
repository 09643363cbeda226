// The REST API on this origin, with the signed-in key. The key lives in this tab's session
// storage only: it goes when the tab closes, and no other tab or page of the origin has it.
import { createParser } from "eventsource-parser";

const KEY = "flowport.key";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  signIn(key) {
    sessionStorage.setItem(KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }

  // Envoy's transcoder answers 404 "Could not resolve ... to a method" for a route this
  // server does not have (an older Flowport), unlike a missing resource's 404.
  get missingRoute() {
    return this.status === 404 && /to a method/i.test(this.message);
  }
}

async function failure(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text is the message.
  }
  const message = body?.message ?? (text || response.statusText);
  return new ApiError(response.status, message, body);
}

function headers(extra = {}) {
  return { "x-api-key": session.key ?? "", ...extra };
}

export async function call(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path) => call("GET", path);
export const post = (path, body = {}) => call("POST", path, body);

export function query(path, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

// An SSE answer read frame by frame: `onFrame({event, data, id})` for each, as it arrives.
// Resolves with the response's headers once the stream has ended; `signal` stops it.
export async function stream(method, path, { body, onFrame, onOpen, signal } = {}) {
  const init = { method, headers: headers({ accept: "text/event-stream" }), signal };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  onOpen?.(response.headers);
  const parser = createParser({
    onEvent(message) {
      let data = message.data;
      try {
        data = JSON.parse(message.data);
      } catch {
        // A frame that is not JSON is shown as its text.
      }
      onFrame({ event: message.event ?? "message", data, id: message.id });
    },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.feed(value);
  }
  return response.headers;
}
