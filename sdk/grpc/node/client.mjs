// Runs a Flowport workflow over gRPC from Node: Run (unary), then RunStream (its events as
// they happen), with the API key in the call's metadata.
//
//   FLOWPORT_GRPC=127.0.0.1:8080 FLOWPORT_KEY=fp_... FLOWPORT_WORKFLOW=wf_... \
//   GOOGLEAPIS_PROTOS=<dir holding google/api/annotations.proto> \
//   node client.mjs '{"height": 1.8, "weight": 75}'
import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const { FLOWPORT_GRPC = "127.0.0.1:8080", FLOWPORT_KEY, FLOWPORT_WORKFLOW, GOOGLEAPIS_PROTOS } = process.env;

// runner.proto imports google/api/annotations.proto (googleapis) and google/protobuf/struct.proto
// (bundled with protobufjs). Flowport's proto/ folder is the source of truth.
const definition = protoLoader.loadSync("flowport/v1/runner.proto", {
  includeDirs: [path.resolve(here, "../../../proto"), GOOGLEAPIS_PROTOS].filter(Boolean),
  keepCase: true, // field names as the .proto spells them: workflow_id, run_id
  longs: String,
  defaults: true,
  oneofs: true, // each RunStreamResponse names its event in `event`
});
const { flowport } = grpc.loadPackageDefinition(definition);
const runner = new flowport.v1.WorkflowRunner(FLOWPORT_GRPC, grpc.credentials.createInsecure());

const metadata = new grpc.Metadata();
metadata.set("x-api-key", FLOWPORT_KEY ?? "");

// google.protobuf.Struct, as proto-loader represents it: each value names its kind.
function toValue(value) {
  if (value === null) return { nullValue: "NULL_VALUE" };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}
function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

const request = { workflow_id: FLOWPORT_WORKFLOW, input: toStruct(JSON.parse(process.argv[2] ?? "{}")) };

try {
  const answer = await new Promise((resolve, reject) =>
    runner.Run(request, metadata, (error, response) => (error ? reject(error) : resolve(response))),
  );
  console.log(`Run: ${answer.output} (${answer.run_id}, ${answer.status})`);

  const call = runner.RunStream(request, metadata);
  for await (const message of call) {
    const event = message[message.event];
    console.log(`RunStream: ${message.event} ${JSON.stringify(event.node_id ?? event.output ?? "")}`);
  }
} catch (error) {
  // A gRPC status: its code's name and the server's message.
  console.error(`error: ${grpc.status[error.code]}: ${error.details}`);
  process.exitCode = 1;
} finally {
  runner.close();
}
