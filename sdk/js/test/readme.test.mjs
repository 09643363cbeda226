// README.md's example, run as a user would run it, its output compared with what README says.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));

test("README's example runs and prints what README says", async () => {
  const readme = await readFile(path.join(here, "../README.md"), "utf8");
  const [, example] = readme.match(/## Example\n\n```js\n([\s\S]*?)```/);
  const [, printed] = readme.match(/\nprints\n\n```\n([\s\S]*?)```/);
  // The package by its path: the example's own import names it as an app would.
  const dist = pathToFileURL(path.join(here, "../dist/index.js")).href;
  const script = path.join(await mkdtemp(path.join(tmpdir(), "flowport-readme-")), "example.mjs");
  await writeFile(script, example.replace('"@flowport/sdk"', JSON.stringify(dist)));

  const { stdout } = await promisify(execFile)(process.execPath, [script]);

  const expected = printed.trimEnd().split("\n");
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, expected.length, stdout);
  lines.forEach((line, i) => {
    // `...` in README stands for what changes from run to run (ids, times).
    const pattern = expected[i].replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replaceAll("\\.\\.\\.", ".+");
    assert.match(line, new RegExp(`^${pattern}$`));
  });
});
