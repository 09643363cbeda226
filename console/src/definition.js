// A workflow definition pasted or uploaded as JSON or YAML (JSON is YAML 1.2, so one parser
// reads both), and where in that text a JSON path (`nodes[1].id`) of a server error lies.
import { LineCounter, parseDocument } from "yaml";

export function parseDefinition(text) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length) {
    const first = doc.errors[0];
    const { line, col } = lineCounter.linePos(first.pos[0]);
    const message = first.message.split("\n")[0];
    return { error: { path: null, line, col, offset: first.pos[0], message } };
  }
  const value = doc.toJS();
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: { path: null, line: 1, col: 1, message: "a definition is an object" } };
  }
  return { value, doc, lineCounter };
}

// `nodes[1].inputs[0].name: duplicate input name` -> ["nodes", 1, "inputs", 0, "name"].
const PATH = /^((?:[A-Za-z_]\w*|\[\d+\])(?:\.[A-Za-z_]\w*|\[\d+\])*):\s/;

export function errorAt(parsed, message) {
  const match = PATH.exec(message);
  if (!match) return { path: null, message };
  const path = match[1];
  const keys = [...path.matchAll(/([A-Za-z_]\w*)|\[(\d+)\]/g)].map((m) =>
    m[1] !== undefined ? m[1] : Number(m[2]),
  );
  // The deepest part of the path the text has: a missing field points at its parent.
  for (let depth = keys.length; depth > 0 && parsed?.doc; depth--) {
    const node = parsed.doc.getIn(keys.slice(0, depth), true);
    if (node?.range) {
      const { line, col } = parsed.lineCounter.linePos(node.range[0]);
      return { path, line, col, offset: node.range[0], message: message.slice(match[0].length) };
    }
  }
  return { path, message: message.slice(match[0].length) };
}
