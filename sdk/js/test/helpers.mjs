// What the tests share: the stack they run against (from the environment), and proxies that
// fail the way networks and gateways do.
import http from "node:http";

import { Flowport } from "../dist/index.js";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: these tests run against a Flowport stack`);
  return value;
}

export const BASE_URL = required("FLOWPORT_URL");
export const KEY = required("FLOWPORT_KEY");
/** FlowAI's BMI calculator, published. */
export const BMI = required("FLOWPORT_WORKFLOW");
/** in -> llm -> out, published, its llm node on the fake LLM. */
export const CHAT = required("FLOWPORT_CHAT_WORKFLOW");
const FAKE_LLM = required("FAKE_LLM_URL");

export function client(options = {}) {
  return new Flowport({ baseUrl: BASE_URL, apiKey: KEY, retryDelayMs: 50, ...options });
}

/** Scripts the fake LLM's next replies (tests/fakes/fake_llm.py's set_reply). */
export async function fakeLlm(script) {
  const response = await fetch(new URL("/_fake/reply", FAKE_LLM), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(script),
  });
  if (!response.ok) throw new Error(`fake LLM: ${response.status} ${await response.text()}`);
}

export async function releaseFakeLlm() {
  await fetch(new URL("/_fake/release", FAKE_LLM), { method: "POST" });
}

/**
 * An HTTP proxy in front of the stack. `intercept(req, count)` may answer a request itself
 * (return true) instead of passing it on; `cutAfterFrames(req)` may return n to drop the
 * connection after n SSE frames of the answer, as a network failure would.
 */
export async function proxy({ intercept = () => false, cutAfterFrames = () => undefined } = {}) {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    if (intercept(req, res, seen.length)) return;
    const target = new URL(req.url, BASE_URL);
    const upstream = http.request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      const cut = cutAfterFrames(req);
      let frames = 0;
      res.flushHeaders();
      answer.on("data", (chunk) => {
        frames += chunk.toString().split("\n\n").length - 1;
        if (cut === undefined || frames < cut) {
          res.write(chunk);
          return;
        }
        answer.destroy();
        // Once the frames so far have left: the client has them when the connection drops.
        res.write(chunk, () => res.socket.destroy());
      });
      answer.on("end", () => res.end());
    });
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
