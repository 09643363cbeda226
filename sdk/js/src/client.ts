/** Flowport's REST client: fetch, retries with backoff, SSE runs that resume where they broke. */

import { createParser, type EventSourceMessage } from "eventsource-parser";

import { apiError, FlowportConnectionError, FlowportError, type ErrorBody } from "./errors.js";
import { toRunEvent, type OutputEvent, type RunEvent, type Usage } from "./events.js";

export interface FlowportOptions {
  /** Envoy's public port, e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  apiKey: string;
  /** Attempts after the first, for calls that are safe to repeat (default 3). */
  maxRetries?: number;
  /** The first retry waits about this long, each next one twice as long (default 500 ms). */
  retryDelayMs?: number;
  /** The longest wait between two attempts, unless `Retry-After` asks for more (default 8 s). */
  maxRetryDelayMs?: number;
  /** Another fetch (a test's, or a polyfill's); default the global one. */
  fetch?: typeof globalThis.fetch;
}

export interface RunOptions {
  /** Continues a session's memory; without it the server makes a session. */
  sessionId?: string;
  webhookUrl?: string;
  /**
   * Makes a retried call the same run. Without it a run call is never retried: a lost
   * answer might have run the workflow already.
   */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

/** The answer of `run` and `start` (`POST /v1/workflows/{id}:run`). */
export interface RunResult {
  output: string;
  total_time: number;
  run_id: string;
  session_id: string;
  usage?: Usage;
  /** `succeeded`, or `queued` for a run started in the background. */
  status: string;
  events_url: string;
}

/** `GET /v1/runs/{id}`: the run as recorded. */
export interface RunRecord {
  id: string;
  workflow_id: string;
  version: number;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  inputs: Record<string, unknown>;
  output: string;
  error?: string;
  error_node?: string;
  total_time?: number;
  session_id: string;
  started_at: string;
  finished_at?: string;
  nodes: Array<Record<string, unknown>>;
  webhook_deliveries: Array<Record<string, unknown>>;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  last_used_at?: string;
  revoked?: boolean;
  expires_at?: string;
  workflows?: string[];
  previous_key_expires_at?: string;
}

/** An ApiKey with its secret, which the server shows in this answer only. */
export interface ApiKeyWithSecret extends ApiKey {
  key: string;
}

export interface Workflow {
  id: string;
  name: string;
  visibility: string;
  status: string;
  latest_version: number;
  definition?: Record<string, unknown>;
  created_at?: string;
  updated_at?: string;
}

/**
 * How far a call may be repeated: `none` never (a run without Idempotency-Key); `refused`
 * only when the server refused it before doing anything (429); `all` also after 502, 503 and
 * a lost connection, for calls whose repeat changes nothing more.
 */
type Repeat = "none" | "refused" | "all";

interface Call {
  method: string;
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
  repeat: Repeat;
  signal?: AbortSignal;
}

const RETRIED_STATUSES = new Set([502, 503]);
const TERMINAL_EVENTS = new Set(["output", "error"]);

export class Flowport {
  readonly runs: Runs;
  readonly keys: Keys;
  readonly workflows: Workflows;
  readonly #baseUrl: string;
  readonly #apiKey: string;
  readonly #fetch: typeof globalThis.fetch;
  readonly maxRetries: number;
  readonly #retryDelayMs: number;
  readonly #maxRetryDelayMs: number;

  constructor(options: FlowportOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetries = options.maxRetries ?? 3;
    this.#retryDelayMs = options.retryDelayMs ?? 500;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 8000;
    this.runs = new Runs(this);
    this.keys = new Keys(this);
    this.workflows = new Workflows(this);
  }

  /** Runs the workflow's newest published version to its end. */
  async run(workflowId: string, input: Record<string, unknown>, options: RunOptions = {}): Promise<RunResult> {
    return this.#typedRun(workflowId, input, "blocking", options);
  }

  /** Starts the workflow in the background (202); follow it with `runs.events` or `runs.wait`. */
  async start(workflowId: string, input: Record<string, unknown>, options: RunOptions = {}): Promise<RunResult> {
    return this.#typedRun(workflowId, input, "async", options);
  }

  /**
   * Runs the workflow, its events as they happen (FlowAI's stream). A connection that drops
   * mid-run is picked up from the run's events after the last event received.
   */
  stream(workflowId: string, input: Record<string, unknown>, options: RunOptions = {}): RunStream {
    const body: Record<string, unknown> = { input, stream: true };
    if (options.sessionId) body.session_id = options.sessionId;
    if (options.webhookUrl) body.webhook_url = options.webhookUrl;
    const open = () =>
      this.request({
        method: "POST",
        path: `/v1/api/workflow/run/${encodeURIComponent(workflowId)}`,
        body,
        headers: idempotencyHeaders(options),
        repeat: options.idempotencyKey ? "all" : "none",
        signal: options.signal,
      });
    return new RunStream(this, open, options.signal);
  }

  async #typedRun(
    workflowId: string,
    input: Record<string, unknown>,
    mode: "blocking" | "async",
    options: RunOptions,
  ): Promise<RunResult> {
    const body: Record<string, unknown> = { input, mode };
    if (options.sessionId) body.session_id = options.sessionId;
    if (options.webhookUrl) body.webhook_url = options.webhookUrl;
    return this.json({
      method: "POST",
      path: `/v1/workflows/${encodeURIComponent(workflowId)}:run`,
      body,
      headers: idempotencyHeaders(options),
      repeat: options.idempotencyKey ? "all" : "none",
      signal: options.signal,
    });
  }

  /** @internal */
  async json<T>(call: Call): Promise<T> {
    const response = await this.request(call);
    return (await response.json()) as T;
  }

  /** @internal An OK response, after the retries the call allows; otherwise a typed error. */
  async request(call: Call): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const mayRetry = attempt < this.maxRetries && call.repeat !== "none";
      let response: Response;
      try {
        response = await this.#fetch(this.#baseUrl + call.path, {
          method: call.method,
          headers: {
            "X-API-KEY": this.#apiKey,
            ...(call.body === undefined ? {} : { "Content-Type": "application/json" }),
            ...call.headers,
          },
          body: call.body === undefined ? undefined : JSON.stringify(call.body),
          signal: call.signal,
        });
      } catch (error) {
        if (call.signal?.aborted) throw error;
        if (mayRetry && call.repeat === "all") {
          await sleep(this.backoff(attempt), call.signal);
          continue;
        }
        throw new FlowportConnectionError(`${call.method} ${call.path}: ${describe(error)}`, { cause: error });
      }
      if (response.ok) return response;
      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      const repeatable =
        response.status === 429 || (call.repeat === "all" && RETRIED_STATUSES.has(response.status));
      if (mayRetry && repeatable) {
        await response.body?.cancel();
        await sleep(retryAfter === undefined ? this.backoff(attempt) : retryAfter * 1000, call.signal);
        continue;
      }
      throw apiError(response.status, await errorBody(response), response.headers.get("x-run-id") ?? undefined, retryAfter);
    }
  }

  /** @internal Exponential, with half of each wait drawn at random ("equal jitter"), so that
   * clients refused together do not all come back at the same instant. */
  backoff(attempt: number): number {
    const ceiling = Math.min(this.#maxRetryDelayMs, this.#retryDelayMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}

/** A run's events, as an async iterable; `run_id` and `session_id` once the stream began. */
export class RunStream implements AsyncIterable<RunEvent> {
  run_id: string | undefined;
  session_id: string | undefined;
  readonly #client: Flowport;
  readonly #open: () => Promise<Response>;
  readonly #signal: AbortSignal | undefined;
  #started = false;

  readonly #after: number;

  /** @internal `after`: the event the first answer starts after (0: the run's start). */
  constructor(client: Flowport, open: () => Promise<Response>, signal?: AbortSignal, runId?: string, after = 0) {
    this.#client = client;
    this.#open = open;
    this.#signal = signal;
    this.run_id = runId;
    this.#after = after;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RunEvent> {
    if (this.#started) throw new FlowportError("a RunStream can be iterated once");
    this.#started = true;
    let response = await this.#open();
    this.run_id ??= response.headers.get("x-run-id") ?? undefined;
    this.session_id ??= response.headers.get("x-session-id") ?? undefined;
    let last = this.#after;
    for (let resumes = 0; ; ) {
      try {
        for await (const frame of sseFrames(response, this.#signal)) {
          // FlowAI's stream writes no `id:` lines, but its frame n is the run's event n.
          last = frame.id ? Number(frame.id) : last + 1;
          const event = toRunEvent(frame.event, frame.data, last);
          yield event;
          if (TERMINAL_EVENTS.has(event.type)) return;
        }
        throw new FlowportConnectionError("the stream ended before the run did");
      } catch (error) {
        const canResume =
          error instanceof FlowportConnectionError && this.run_id !== undefined && !this.#signal?.aborted;
        if (!canResume || resumes >= this.#client.maxRetries) throw error;
        await sleep(this.#client.backoff(resumes++), this.#signal);
        response = await this.#client.runs.openEvents(this.run_id!, last, this.#signal);
      }
    }
  }

  /** Reads the stream to its end: the output event, or a typed error for a failed run. */
  async finalOutput(): Promise<OutputEvent> {
    for await (const event of this) {
      if (event.type === "output") return event;
      if (event.type === "error") {
        throw apiError(event.code, { code: event.code, message: event.message }, this.run_id, undefined);
      }
    }
    throw new FlowportConnectionError("the stream ended without an output");
  }
}

export class Runs {
  readonly #client: Flowport;

  constructor(client: Flowport) {
    this.#client = client;
  }

  async get(runId: string, options: { signal?: AbortSignal } = {}): Promise<RunRecord> {
    return this.#client.json({ method: "GET", path: `/v1/runs/${encodeURIComponent(runId)}`, repeat: "all", ...options });
  }

  /** Stops a run in progress or waiting; answers once it has stopped. A run that had ended: ConflictError. */
  async cancel(runId: string): Promise<RunRecord> {
    // A second cancel changes nothing (409 at worst), so a lost answer may be asked again.
    return this.#client.json({ method: "POST", path: `/v1/runs/${encodeURIComponent(runId)}:cancel`, body: {}, repeat: "all" });
  }

  /**
   * The run's events from the start, or after event `after` (sent as `Last-Event-ID`); a
   * live run is followed to its end, and a dropped connection resumed.
   */
  events(runId: string, options: { after?: number; signal?: AbortSignal } = {}): RunStream {
    const after = options.after ?? 0;
    return new RunStream(this.#client, () => this.openEvents(runId, after, options.signal), options.signal, runId, after);
  }

  /** Waits for the run to end (following its events, no polling) and answers its record. */
  async wait(runId: string, options: { signal?: AbortSignal } = {}): Promise<RunRecord> {
    for await (const event of this.events(runId, options)) {
      void event;
    }
    return this.get(runId, options);
  }

  /** @internal */
  async openEvents(runId: string, after: number, signal?: AbortSignal): Promise<Response> {
    return this.#client.request({
      method: "GET",
      path: `/v1/runs/${encodeURIComponent(runId)}/events`,
      headers: after > 0 ? { "Last-Event-ID": String(after) } : {},
      repeat: "all",
      signal,
    });
  }
}

export class Keys {
  readonly #client: Flowport;

  constructor(client: Flowport) {
    this.#client = client;
  }

  async create(options: {
    name: string;
    scopes?: Array<"run" | "admin">;
    expiresAt?: string | Date;
    workflows?: string[];
  }): Promise<ApiKeyWithSecret> {
    const body: Record<string, unknown> = { name: options.name };
    if (options.scopes) body.scopes = options.scopes;
    if (options.expiresAt) body.expires_at = new Date(options.expiresAt).toISOString();
    if (options.workflows) body.workflows = options.workflows;
    return this.#client.json({ method: "POST", path: "/v1/keys", body, repeat: "refused" });
  }

  async list(): Promise<ApiKey[]> {
    const answer = await this.#client.json<{ keys: ApiKey[] }>({ method: "GET", path: "/v1/keys", repeat: "all" });
    return answer.keys;
  }

  /** Revokes the key: it fails with 401 from then on. Revoking again is fine. */
  async revoke(id: string): Promise<void> {
    await this.#client.request({ method: "DELETE", path: `/v1/keys/${encodeURIComponent(id)}`, repeat: "all" });
  }

  /** A new secret for the key; the old one works `graceS` seconds more (default 0). */
  async rotate(id: string, options: { graceS?: number } = {}): Promise<ApiKeyWithSecret> {
    const body = options.graceS === undefined ? {} : { grace_s: options.graceS };
    return this.#client.json({ method: "POST", path: `/v1/keys/${encodeURIComponent(id)}:rotate`, body, repeat: "refused" });
  }
}

export class Workflows {
  readonly #client: Flowport;

  constructor(client: Flowport) {
    this.#client = client;
  }

  /** Saves a new workflow as a draft. */
  async create(definition: Record<string, unknown>): Promise<Workflow> {
    return this.#client.json({ method: "POST", path: "/v1/workflows", body: definition, repeat: "refused" });
  }

  /** Replaces the draft. */
  async update(id: string, definition: Record<string, unknown>): Promise<Workflow> {
    return this.#client.json({ method: "PUT", path: `/v1/workflows/${encodeURIComponent(id)}`, body: definition, repeat: "all" });
  }

  /** Makes the draft the newest version, which runs use from then on. */
  async publish(id: string): Promise<{ id: string; version: number }> {
    return this.#client.json({ method: "POST", path: `/v1/workflows/${encodeURIComponent(id)}:publish`, body: {}, repeat: "refused" });
  }

  async get(id: string): Promise<Workflow> {
    return this.#client.json({ method: "GET", path: `/v1/workflows/${encodeURIComponent(id)}`, repeat: "all" });
  }

  async list(): Promise<Workflow[]> {
    const answer = await this.#client.json<{ workflows: Workflow[] }>({ method: "GET", path: "/v1/workflows", repeat: "all" });
    return answer.workflows;
  }
}

function idempotencyHeaders(options: RunOptions): Record<string, string> {
  return options.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
}

async function* sseFrames(response: Response, signal: AbortSignal | undefined): AsyncGenerator<EventSourceMessage> {
  if (!response.body) throw new FlowportConnectionError("the answer has no body");
  const frames: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (frame) => frames.push(frame) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (signal?.aborted) throw error;
        throw new FlowportConnectionError(`the stream was cut: ${describe(error)}`, { cause: error });
      }
      if (chunk.done) return;
      parser.feed(decoder.decode(chunk.value, { stream: true }));
      while (frames.length > 0) yield frames.shift()!;
    }
  } finally {
    // A consumer that stops early must not leave the connection open.
    reader.cancel().catch(() => undefined);
  }
}

async function errorBody(response: Response): Promise<ErrorBody> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as ErrorBody & { success?: boolean };
    if (typeof body === "object" && body !== null) return body;
  } catch {
    // Not JSON: a proxy's page, say; its text is the message.
  }
  return { code: response.status, message: text || `HTTP ${response.status}` };
}

/** `Retry-After` in seconds: a number of seconds or an HTTP date. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
