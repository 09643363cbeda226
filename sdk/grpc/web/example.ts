// Browser code: Flowport's WorkflowRunner over gRPC-Web, with Connect-ES and the TypeScript
// stubs that sdk/grpc/buf.gen.yaml makes (in gen/). Bundle it with your page's code.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { WorkflowRunner } from "./gen/flowport/v1/runner_pb.js";

export async function runBmi(baseUrl: string, apiKey: string, workflowId: string, log: (line: string) => void) {
  const withKey: Interceptor = (next) => (request) => {
    request.header.set("x-api-key", apiKey);
    return next(request);
  };
  // gRPC-Web over fetch: HTTP/1.1 or HTTP/2, whichever the browser has with Flowport's port.
  const runner = createClient(WorkflowRunner, createGrpcWebTransport({ baseUrl, interceptors: [withKey] }));
  const request = { workflowId, input: { height: 1.8, weight: 75 } };

  try {
    const answer = await runner.run(request);
    log(`Run: ${answer.output} (${answer.status})`);
    for await (const message of runner.runStream(request)) {
      const { event } = message;
      log(`RunStream: ${event.case} ${event.case === "output" ? event.value.output : (event.value?.nodeId ?? "")}`);
    }
  } catch (error) {
    const status = ConnectError.from(error);
    log(`error: ${Code[status.code]}: ${status.rawMessage}`);
  }
}
