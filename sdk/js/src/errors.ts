/** Typed errors: one class per kind of answer a caller handles differently. */

/** What the server said: FlowAI's `{code, message}` or a `google.rpc.Status` with details. */
export interface ErrorBody {
  code?: number;
  message?: string;
  details?: Array<Record<string, unknown>>;
}

export class FlowportError extends Error {
  override name = "FlowportError";
}

/** The request never got an answer: a refused connection, a reset, a dropped stream. */
export class FlowportConnectionError extends FlowportError {
  override name = "FlowportConnectionError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The server answered with an error status. */
export class FlowportApiError extends FlowportError {
  override name = "FlowportApiError";
  /** The HTTP status. */
  readonly status: number;
  /** The ErrorInfo reason of docs/api.md's table (`RATE_LIMITED`, `NOT_FOUND`...), when given. */
  readonly reason: string | undefined;
  /** `google.rpc.Status` details, as the server sent them. */
  readonly details: Array<Record<string, unknown>>;
  /** The run the failure belongs to, when it had started (`x-run-id`). */
  readonly runId: string | undefined;

  constructor(status: number, body: ErrorBody, runId?: string) {
    super(body.message ?? `HTTP ${status}`);
    this.status = status;
    this.details = body.details ?? [];
    const info = this.details.find((d) => String(d["@type"]).endsWith("google.rpc.ErrorInfo"));
    this.reason = typeof info?.reason === "string" ? info.reason : undefined;
    this.runId = runId;
  }
}

export class BadRequestError extends FlowportApiError {
  override name = "BadRequestError";
}
export class AuthenticationError extends FlowportApiError {
  override name = "AuthenticationError";
}
/** 402 on FlowAI's and the typed routes: the account's run credits are used up. */
export class CreditsExhaustedError extends FlowportApiError {
  override name = "CreditsExhaustedError";
}
export class PermissionDeniedError extends FlowportApiError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends FlowportApiError {
  override name = "NotFoundError";
}
/** 409: blocked by the content policy, or a cancel for a run that had already ended. */
export class ConflictError extends FlowportApiError {
  override name = "ConflictError";
}
export class IdempotencyKeyReusedError extends FlowportApiError {
  override name = "IdempotencyKeyReusedError";
}
export class RateLimitedError extends FlowportApiError {
  override name = "RateLimitedError";
  /** Seconds the server asked to wait (`Retry-After`); absent for a full queue. */
  readonly retryAfter: number | undefined;
  constructor(status: number, body: ErrorBody, runId: string | undefined, retryAfter: number | undefined) {
    super(status, body, runId);
    this.retryAfter = retryAfter;
  }
}
/** 499: a cancel call stopped the run. */
export class RunCancelledError extends FlowportApiError {
  override name = "RunCancelledError";
}
/** 5xx: the service, a node or the LLM provider failed. */
export class ServerError extends FlowportApiError {
  override name = "ServerError";
}

export function apiError(
  status: number,
  body: ErrorBody,
  runId: string | undefined,
  retryAfter: number | undefined,
): FlowportApiError {
  switch (status) {
    case 400:
      return new BadRequestError(status, body, runId);
    case 401:
      return new AuthenticationError(status, body, runId);
    case 402:
      return new CreditsExhaustedError(status, body, runId);
    case 403:
      return new PermissionDeniedError(status, body, runId);
    case 404:
      return new NotFoundError(status, body, runId);
    case 409:
      return new ConflictError(status, body, runId);
    case 422:
      return new IdempotencyKeyReusedError(status, body, runId);
    case 429:
      return new RateLimitedError(status, body, runId, retryAfter);
    case 499:
      return new RunCancelledError(status, body, runId);
    default:
      return status >= 500 ? new ServerError(status, body, runId) : new FlowportApiError(status, body, runId);
  }
}
