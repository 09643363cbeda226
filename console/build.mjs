// Bundles src/ into static/ (committed, shipped as the package flowport.console): one
// script and one stylesheet, named in index.html with a hash of their bytes so a browser
// may keep them for a year and still never runs a stale one. `node build.mjs --out DIR`
// writes elsewhere (`make check-console` compares that with static/).
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf("--out");
const out = flag === -1 ? join(here, "static") : process.argv[flag + 1];
mkdirSync(out, { recursive: true });

const bundle = await esbuild.build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  write: false,
  // No source paths of this machine in the bundle: it is the same wherever it is built.
  sourceRoot: "",
  absWorkingDir: here,
});
const script = bundle.outputFiles[0].contents;
writeFileSync(join(out, "console.js"), script);
copyFileSync(join(here, "src", "console.css"), join(out, "console.css"));

const digest = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);
const page = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("console.js", `console.js?v=${digest(script)}`)
  .replace("console.css", `console.css?v=${digest(readFileSync(join(out, "console.css")))}`);
writeFileSync(join(out, "index.html"), page);
