// Runs example.ts (compiled to dist/) from Node, which has fetch as browsers do.
import { runBmi } from "./dist/example.js";

const { FLOWPORT_URL, FLOWPORT_KEY, FLOWPORT_WORKFLOW } = process.env;
await runBmi(FLOWPORT_URL, FLOWPORT_KEY, FLOWPORT_WORKFLOW, console.log);
