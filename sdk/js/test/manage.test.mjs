import assert from "node:assert/strict";
import { test } from "node:test";

import { AuthenticationError, Flowport } from "../dist/index.js";
import { BASE_URL, client } from "./helpers.mjs";

const ECHO = {
  name: "Echo",
  nodes: [
    { id: "start", type: "in", name: "in", inputs: [{ name: "text", type: "text", required: true }] },
    { id: "end", type: "out", name: "out", output: "v1: {{ text }}" },
  ],
  edges: [{ from: "start", to: "end" }],
};

test("workflows: a draft, published, updated and published again", async () => {
  const sdk = client();

  const created = await sdk.workflows.create(ECHO);
  assert.equal(created.status, "draft");
  assert.equal((await sdk.workflows.publish(created.id)).version, 1);
  assert.equal((await sdk.run(created.id, { text: "hi" })).output, "v1: hi");

  const v2 = structuredClone(ECHO);
  v2.nodes[1].output = "v2: {{ text }}";
  await sdk.workflows.update(created.id, v2);
  assert.equal((await sdk.workflows.publish(created.id)).version, 2);

  assert.equal((await sdk.run(created.id, { text: "hi" })).output, "v2: hi");
  assert.equal((await sdk.workflows.get(created.id)).latest_version, 2);
  assert.ok((await sdk.workflows.list()).some((w) => w.id === created.id));
});

test("keys: created, listed, rotated and revoked", async () => {
  const sdk = client();

  const made = await sdk.keys.create({ name: "sdk-test", scopes: ["run"] });
  assert.match(made.key, /^fp_[A-Za-z0-9]{32}$/);
  assert.deepEqual(made.scopes, ["run"]);
  assert.ok((await sdk.keys.list()).some((k) => k.id === made.id && !k.revoked));

  const rotated = await sdk.keys.rotate(made.id);
  assert.notEqual(rotated.key, made.key);
  const old = new Flowport({ baseUrl: BASE_URL, apiKey: made.key, maxRetries: 0 });
  assert.ok((await old.runs.get("run_x").catch((e) => e)) instanceof AuthenticationError);

  await sdk.keys.revoke(made.id);
  const revoked = new Flowport({ baseUrl: BASE_URL, apiKey: rotated.key, maxRetries: 0 });
  const error = await revoked.runs.get("run_x").catch((e) => e);
  assert.ok(error instanceof AuthenticationError);
  assert.equal(error.message, "invalid API key");
  assert.ok((await sdk.keys.list()).find((k) => k.id === made.id).revoked);
});
