import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  AuthenticationError,
  BadRequestError,
  ConflictError,
  FlowportConnectionError,
  NotFoundError,
  RateLimitedError,
  ServerError,
} from "../dist/index.js";
import { BMI, CHAT, client, fakeLlm, proxy, releaseFakeLlm } from "./helpers.mjs";

after(releaseFakeLlm);

test("a blocking run answers its output", async () => {
  const result = await client().run(BMI, { height: "1.8", weight: 75 });

  assert.equal(result.output, "您的BMI值是23.15");
  assert.equal(result.status, "succeeded");
  assert.match(result.run_id, /^run_/);
  assert.equal(result.events_url, `/v1/runs/${result.run_id}/events`);
});

test("a stream yields typed events in order, the output last", async () => {
  await fakeLlm({ tokens: ["嗯", ",在", "呢。"], delay_s: 0.02 });
  const stream = client().stream(CHAT, { 输入: "在吗?" });

  const events = [];
  for await (const event of stream) events.push(event);

  assert.equal(events[0].type, "run_started");
  assert.deepEqual(events[0].input, { 输入: "在吗?" });
  assert.ok(events.some((e) => e.type === "node_started" && e.node_id === "1741675999864"));
  const text = events.filter((e) => e.type === "token").map((e) => e.content).join("");
  assert.equal(text, "嗯,在呢。");
  const last = events.at(-1);
  assert.equal(last.type, "output");
  assert.equal(last.output, "嗯,在呢。");
  assert.equal(last.run_id, stream.run_id);
  assert.match(stream.session_id, /^sess_/);
  assert.deepEqual(events.map((e) => e.id), events.map((_, i) => i + 1));
});

test("a run started in the background is waited for", async () => {
  const sdk = client();
  const started = await sdk.start(BMI, { height: 1.8, weight: 75 });
  assert.equal(started.status, "queued");

  const record = await sdk.runs.wait(started.run_id);

  assert.equal(record.status, "succeeded");
  assert.equal(record.output, "您的BMI值是23.15");
  assert.equal(record.id, started.run_id);
});

test("a run's events replay after a Last-Event-ID", async () => {
  const sdk = client();
  const { run_id } = await sdk.run(BMI, { height: 1.8, weight: 75 });

  const all = [];
  for await (const event of sdk.runs.events(run_id)) all.push(event);
  const rest = [];
  for await (const event of sdk.runs.events(run_id, { after: 3 })) rest.push(event);

  assert.equal(all.at(-1).type, "output");
  assert.deepEqual(rest, all.slice(3));
  assert.equal(rest[0].id, 4);
});

test("a stream whose connection drops resumes from the run's events", async () => {
  await fakeLlm({ tokens: ["one ", "two ", "three ", "four ", "five"], delay_s: 0.1 });
  // The stream's first answer is cut after its fourth frame, mid-answer of the llm node.
  const gateway = await proxy({
    cutAfterFrames: (req) => (req.url.startsWith("/v1/api/workflow/run/") ? 4 : undefined),
  });
  try {
    const events = [];
    for await (const event of client({ baseUrl: gateway.url }).stream(CHAT, { 输入: "count" })) events.push(event);

    const resumed = gateway.seen.filter((r) => r.url.endsWith("/events"));
    assert.equal(resumed.length, 1);
    const lastEventId = Number(resumed[0].headers["last-event-id"]);
    assert.ok(lastEventId >= 4 && lastEventId < events.length, `resumed after ${lastEventId}`);
    assert.deepEqual(events.map((e) => e.id), events.map((_, i) => i + 1));
    const text = events.filter((e) => e.type === "token").map((e) => e.content).join("");
    assert.equal(text, "one two three four five");
    assert.equal(events.at(-1).type, "output");
  } finally {
    await gateway.close();
  }
});

test("a cancelled run ends its stream with an error event; a second cancel conflicts", async () => {
  await fakeLlm({ tokens: ["a", "b", "c"], pause_after: 1 });
  const sdk = client();
  const stream = sdk.stream(CHAT, { 输入: "hi" });
  const events = [];
  try {
    for await (const event of stream) {
      events.push(event);
      if (event.type === "token") {
        const record = await sdk.runs.cancel(stream.run_id);
        assert.equal(record.status, "cancelled");
      }
    }
  } finally {
    await releaseFakeLlm();
  }

  const last = events.at(-1);
  assert.equal(last.type, "error");
  assert.equal(last.code, 499);
  const again = await sdk.runs.cancel(stream.run_id).catch((e) => e);
  assert.ok(again instanceof ConflictError);
  assert.equal(again.status, 409);
  assert.equal(again.reason, "RUN_ENDED");
});

test("errors are typed, with the server's reason", async () => {
  const sdk = client();

  const bad = await sdk.run(BMI, { height: 1.8 }).catch((e) => e);
  assert.ok(bad instanceof BadRequestError);
  assert.equal(bad.status, 400);
  assert.equal(bad.reason, "INVALID_ARGUMENT");
  assert.match(bad.message, /input\.weight/);

  const missing = await sdk.runs.get("run_doesnotexist0000000").catch((e) => e);
  assert.ok(missing instanceof NotFoundError);

  // Before a stream begins, its errors are thrown by the iteration.
  const streamed = await client()
    .stream("wf_doesnotexist", {})
    .finalOutput()
    .catch((e) => e);
  assert.ok(streamed instanceof NotFoundError);

  const anonymous = await client({ apiKey: "fp_nope" }).workflows.list().catch((e) => e);
  assert.ok(anonymous instanceof AuthenticationError);
  assert.equal(anonymous.status, 401);
});

test("429s are retried after Retry-After; without retries they are RateLimitedError", async () => {
  // A key of its own: the burst must not slow the other tests' key.
  const { key } = await client().keys.create({ name: "burst", scopes: ["admin", "run"] });
  const burst = (sdk) => Promise.allSettled(Array.from({ length: 40 }, () => sdk.workflows.list()));

  const refused = (await burst(client({ apiKey: key, maxRetries: 0 }))).filter((r) => r.status === "rejected");
  assert.ok(refused.length > 0, "the burst went over the rate limit");
  for (const { reason } of refused) {
    assert.ok(reason instanceof RateLimitedError);
    assert.ok(reason.retryAfter > 0);
  }

  const retried = await burst(client({ apiKey: key, maxRetries: 5 }));
  assert.deepEqual(retried.filter((r) => r.status === "rejected"), []);
});

test("a 503 is retried for a read, never for a run without an Idempotency-Key", async () => {
  // A gateway that answers the 1st, 3rd and 4th requests with a 503 itself.
  const gateway = await proxy({
    intercept: (req, res, count) => {
      if (![1, 3, 4].includes(count)) return false;
      res.writeHead(503, { "content-type": "text/plain" }).end("upstream connect error");
      return true;
    },
  });
  try {
    const sdk = client({ baseUrl: gateway.url });

    const record = await sdk.runs.get((await client().run(BMI, { height: 1.8, weight: 75 })).run_id);
    assert.equal(record.status, "succeeded");
    assert.equal(gateway.seen.length, 2);

    const refused = await sdk.run(BMI, { height: 1.8, weight: 75 }).catch((e) => e);
    assert.ok(refused instanceof ServerError);
    assert.equal(refused.status, 503);
    assert.equal(gateway.seen.length, 3);

    const keyed = await sdk.run(BMI, { height: 1.8, weight: 75 }, { idempotencyKey: `k-${Date.now()}` });
    assert.equal(keyed.output, "您的BMI值是23.15");
    assert.equal(gateway.seen.length, 5);
  } finally {
    await gateway.close();
  }
});

test("a refused connection is a FlowportConnectionError", async () => {
  const gateway = await proxy();
  await gateway.close();

  const error = await client({ baseUrl: gateway.url, maxRetries: 1 }).runs.get("run_x").catch((e) => e);

  assert.ok(error instanceof FlowportConnectionError);
});
