/** A run's SSE frames (FlowAI's stream and `GET /v1/runs/{id}/events`) as typed events. */

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
}

interface EventBase {
  /** The frame's number in the run (its SSE `id:`), counting from 1. */
  id: number;
}

/** Always the first event: the `in` node and the validated input. */
export interface RunStartedEvent extends EventBase {
  type: "run_started";
  node_id: string;
  input: Record<string, unknown>;
}
export interface NodeStartedEvent extends EventBase {
  type: "node_started";
  node_id: string;
  message: string;
}
export interface NodeFinishedEvent extends EventBase {
  type: "node_finished";
  node_id: string;
  message: string;
  time_spend: number;
  /** `skipped` for a node on a branch not taken; absent otherwise. */
  status: string | undefined;
}
/** Text of an llm node as the model generates it; a reasoning chunk has `reasoning` set. */
export interface TokenEvent extends EventBase {
  type: "token";
  node_id: string;
  content: string;
  reasoning: string | null;
}
/** The run succeeded: always the last event. */
export interface OutputEvent extends EventBase {
  type: "output";
  output: string;
  total_time: number;
  run_id: string;
  usage: Usage | undefined;
}
/** The run failed after it began: always the last event. `code` is the HTTP status. */
export interface ErrorEvent extends EventBase {
  type: "error";
  node_id: string | null;
  code: number;
  message: string;
}

export type RunEvent =
  | RunStartedEvent
  | NodeStartedEvent
  | NodeFinishedEvent
  | TokenEvent
  | OutputEvent
  | ErrorEvent;

/** One SSE frame as the server wrote it; `id` is the frame's number in the run. */
export function toRunEvent(event: string | undefined, data: string, id: number): RunEvent {
  const body = JSON.parse(data) as Record<string, any>;
  switch (event) {
    case "msg":
      switch (body.Type) {
        case "start":
          return { type: "run_started", id, node_id: body.Node, input: body.Data ?? {} };
        case "start_node":
          return { type: "node_started", id, node_id: body.Node, message: body.Msg };
        case "finish_node":
          return {
            type: "node_finished",
            id,
            node_id: body.Node,
            message: body.Msg,
            time_spend: body.Data?.time_spend ?? 0,
            status: body.Data?.status,
          };
      }
      break;
    case "stream":
      return { type: "token", id, node_id: body.Node, content: body.Content ?? "", reasoning: body.Reasoning ?? null };
    case "output":
      return {
        type: "output",
        id,
        output: body.output,
        total_time: body.total_time,
        run_id: body.run_id,
        usage: body.usage,
      };
    case "error":
      return { type: "error", id, node_id: body.Node ?? null, code: body.code, message: body.message };
  }
  throw new Error(`unknown frame: event ${event}, data ${data}`);
}
