/** Flowport's client for Node (18+) and browsers. */

export * from "./client.js";
export * from "./errors.js";
export * from "./events.js";
