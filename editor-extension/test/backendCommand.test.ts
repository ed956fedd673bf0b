// Finding podside, in real folders with real programs and interpreters; and the check of the
// backend that answered, against the real `podside lsp`.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from "vscode-jsonrpc/node";
import which from "which";
import { BACKEND_COMMANDS, NOT_FOUND, findBackend, lookUpBackend, mismatch, unavailableBackend, type Surroundings } from "../src/backendCommand";
import { TargetsModel } from "../src/tree/targetsModel";
import { FakeSeam } from "./fakes";

const EXTENSION = join(__dirname, "..", "..");
const CHECKOUT = join(EXTENSION, "..");
/** The checkout's environment (make install): an interpreter that imports podside. */
const VENV_PYTHON = join(CHECKOUT, ".venv", "bin", "python");
const VENV_PODSIDE = join(CHECKOUT, ".venv", "bin", "podside");
const VERSION: string = JSON.parse(readFileSync(join(EXTENSION, "package.json"), "utf8")).version;

const scratch = mkdtempSync(join(tmpdir(), "podside-lookup-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let folders = 0;

/** A fresh folder with the given files; `program` files are executable shell scripts. */
function folder(files: Record<string, "program" | "file" | "folder"> = {}): string {
  const root = join(scratch, String(folders++));
  mkdirSync(root);
  for (const [name, kind] of Object.entries(files)) {
    const path = join(root, name);
    if (kind === "folder") {
      mkdirSync(path, { recursive: true });
      continue;
    }
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, `#!/bin/sh\necho "${path} $*"\n`);
    chmodSync(path, kind === "program" ? 0o755 : 0o644);
  }
  return root;
}

/** Nothing to find unless a test adds it: an empty PATH and HOME, no workspace, no Python extension. */
function surroundings(overrides: Partial<Surroundings> & { path?: string; home?: string } = {}): Surroundings {
  const { path, home, ...rest } = overrides;
  return {
    setting: "",
    env: { PATH: path ?? folder(), HOME: home ?? folder() },
    workspaceFolders: [],
    selectedPython: async () => undefined,
    ...rest,
  };
}

/** What the found command prints when run: proves it is a command line that runs. */
function run(found: { command: string; args: string[] }, ...more: string[]): string {
  return execFileSync(found.command, [...found.args, ...more], { encoding: "utf8" }).trim();
}

test("the podside.path setting wins over podside on PATH", async () => {
  const bin = folder({ podside: "program" });
  const chosen = folder({ "tools/podside-dev": "program" });
  const lookup = await findBackend(surroundings({ path: bin, setting: join(chosen, "tools/podside-dev") }));
  assert.deepEqual(lookup, { found: { command: join(chosen, "tools/podside-dev"), args: [] } });
});

test("a wrong podside.path is an error naming the setting, not a quiet fall-back to another podside", async () => {
  const bin = folder({ podside: "program" });
  const place = folder({ "not-a-program": "file", "a-folder": "folder" });
  for (const setting of [join(place, "missing"), join(place, "not-a-program"), join(place, "a-folder"), "no-such-podside"]) {
    const lookup = await findBackend(surroundings({ path: bin, setting }));
    assert.deepEqual(lookup, {
      problem: `podside: podside.path is "${setting}", which is not an executable program; correct it, or clear it to look podside up`,
    });
  }
});

test("podside.path may be a name on PATH, a path under ~, or a path relative to the workspace", async () => {
  const bin = folder({ "podside-dev": "program" });
  const home = folder({ "bin/podside": "program" });
  const workspace = folder({ "tools/podside": "program" });
  const lookups = await Promise.all(
    ["podside-dev", "~/bin/podside", "tools/podside"].map((setting) =>
      findBackend(surroundings({ path: bin, home, setting, workspaceFolders: [workspace] })),
    ),
  );
  assert.deepEqual(
    lookups.map((lookup) => ("found" in lookup ? lookup.found.command : lookup.problem)),
    [join(bin, "podside-dev"), join(home, "bin/podside"), join(workspace, "tools/podside")],
  );
});

test("unset, podside on PATH comes first, before the workspace's environment", async () => {
  const empty = folder();
  const bin = folder({ podside: "program" });
  const workspace = folder({ ".venv/bin/podside": "program" });
  let asked = false;
  const lookup = await findBackend(
    surroundings({ path: `${empty}:${bin}`, workspaceFolders: [workspace], selectedPython: async () => ((asked = true), VENV_PYTHON) }),
  );
  assert.deepEqual(lookup, { found: { command: join(bin, "podside"), args: [] } });
  assert.equal(asked, false, "the Python extension is asked only when no podside program was found");
});

test("without podside on PATH: the workspace's .venv, then its venv, in each folder", async () => {
  const first = folder({ "venv/bin/podside": "program" });
  const second = folder({ ".venv/bin/podside": "program" });
  const notExecutable = folder({ ".venv/bin/podside": "file" });
  const lookup = await findBackend(surroundings({ workspaceFolders: [notExecutable, first, second] }));
  assert.deepEqual(lookup, { found: { command: join(first, "venv/bin/podside"), args: [] } });
  const both = folder({ ".venv/bin/podside": "program", "venv/bin/podside": "program" });
  assert.deepEqual(await findBackend(surroundings({ workspaceFolders: [both] })), {
    found: { command: join(both, ".venv/bin/podside"), args: [] },
  });
});

test("the Python extension's interpreter runs `-m podside` when podside is installed in it", async () => {
  const lookup = await findBackend(surroundings({ selectedPython: async () => VENV_PYTHON }));
  assert.deepEqual(lookup, { found: { command: VENV_PYTHON, args: ["-m", "podside"] } });
  assert.equal("found" in lookup && run(lookup.found, "--version"), `podside ${VERSION}`);
});

test("an interpreter without podside is passed over", async () => {
  const systemPython = await which("python3", { path: "/usr/bin:/bin" });
  const home = folder({ ".local/bin/podside": "program" });
  const lookup = await findBackend(surroundings({ home, selectedPython: async () => systemPython }));
  assert.deepEqual(lookup, { found: { command: join(home, ".local/bin/podside"), args: [] } });
  const bin = folder();
  symlinkSync(systemPython, join(bin, "python3"));
  assert.deepEqual(await findBackend(surroundings({ path: bin, selectedPython: async () => systemPython })), { problem: NOT_FOUND });
});

test("a pip --user install in ~/.local/bin is found though PATH lacks it", async () => {
  const home = folder({ ".local/bin/podside": "program" });
  const lookup = await findBackend(surroundings({ home }));
  assert.deepEqual(lookup, { found: { command: join(home, ".local/bin/podside"), args: [] } });
});

test("last, python3 on PATH when it runs podside", async () => {
  // A link would not do: Python finds its environment next to the path it was started by.
  const bin = folder();
  writeFileSync(join(bin, "python3"), `#!/bin/sh\nexec "${VENV_PYTHON}" "$@"\n`, { mode: 0o755 });
  const lookup = await findBackend(surroundings({ path: bin }));
  assert.deepEqual(lookup, { found: { command: join(bin, "python3"), args: ["-m", "podside"] } });
  assert.equal("found" in lookup && run(lookup.found, "--version"), `podside ${VERSION}`);
});

test("with no podside anywhere, one line says how to install it", async () => {
  const lookup = await findBackend(surroundings({ workspaceFolders: [folder({ ".venv/bin": "folder" })] }));
  assert.deepEqual(lookup, {
    problem: 'podside: the podside command was not found; install it with "pip install podside" (or "pipx install podside"), or set podside.path',
  });
});

test("the extension's setting and folders are what is searched; a problem comes with the setting's button", async () => {
  const seam = new FakeSeam();
  seam.folders = [folder({ ".venv/bin/podside": "program" })];
  const env = { PATH: folder(), HOME: folder() };
  assert.deepEqual(await lookUpBackend(seam, env), { found: { command: join(seam.folders[0]!, ".venv/bin/podside"), args: [] } });
  seam.settings.path = "/nowhere/podside";
  assert.ok("problem" in (await lookUpBackend(seam, env)));
  seam.folders = [];
  seam.settings = {};
  await lookUpBackend(seam, env);
  assert.deepEqual(seam.settingErrors, [
    ['podside: podside.path is "/nowhere/podside", which is not an executable program; correct it, or clear it to look podside up', "podside.path"],
    [NOT_FOUND, "podside.path"],
  ]);
});

test("without a backend the Targets view shows how to install podside", async () => {
  const targets = new TargetsModel(unavailableBackend(NOT_FOUND));
  assert.deepEqual(await targets.children(undefined), [{ kind: "message", text: NOT_FOUND, error: true }]);
});

/** The backend's commands that the extension's sources send, read from the sources themselves. */
function commandsSent(): string[] {
  const sources = readdirSync(join(EXTENSION, "src"), { recursive: true, encoding: "utf8" }).filter((name) => name.endsWith(".ts"));
  const sent = new Set<string>();
  for (const name of sources) {
    const source = readFileSync(join(EXTENSION, "src", name), "utf8");
    for (const [, command] of source.matchAll(/(?:command(?:<[^>]*>)?|tell)\("(podside\.\w+)"/g)) if (command !== undefined) sent.add(command);
  }
  return [...sent].sort();
}

test("BACKEND_COMMANDS are the commands the extension sends", () => {
  assert.deepEqual([...BACKEND_COMMANDS].sort(), commandsSent());
});

test("a backend of another release, or without a command the extension sends, is named in one line", () => {
  const all = { commands: [...BACKEND_COMMANDS] };
  assert.equal(mismatch("0.1.0", { serverInfo: { version: "0.1.3" }, capabilities: { executeCommandProvider: all } }, "podside"), undefined);
  assert.equal(
    mismatch("0.1.0", { serverInfo: { version: "0.2.0" }, capabilities: { executeCommandProvider: all } }, '"/usr/bin/podside lsp"'),
    'podside: "/usr/bin/podside lsp" is podside 0.2.0 and this extension is 0.1.0: they may not work together; install the same release ("pip install podside==0.1.0") or set podside.path',
  );
  const older = { commands: BACKEND_COMMANDS.filter((command) => command !== "podside.replayRequest") };
  assert.equal(
    mismatch("0.1.0", { serverInfo: { version: "0.1.0" }, capabilities: { executeCommandProvider: older } }, '"podside lsp"'),
    'podside: "podside lsp" is podside 0.1.0, which lacks podside.replayRequest that this extension (0.1.0) uses; install the same release ("pip install podside==0.1.0") or set podside.path',
  );
});

test("the checkout's own `podside lsp` is a backend this extension works with", async () => {
  const child = spawn(VENV_PODSIDE, ["lsp"], { stdio: ["pipe", "pipe", "inherit"] });
  const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  connection.listen();
  try {
    const answer = await connection.sendRequest<{ serverInfo?: { version?: string }; capabilities: { executeCommandProvider?: { commands: string[] } } }>(
      "initialize",
      { processId: process.pid, rootUri: null, capabilities: {} },
    );
    assert.equal(answer.serverInfo?.version, VERSION);
    assert.equal(mismatch(VERSION, answer, "podside"), undefined);
    // The check can fail: the same backend is refused by an extension of another release.
    assert.match(mismatch("9.0.0", answer, "podside") ?? "", /is podside \S+ and this extension is 9\.0\.0/);
  } finally {
    connection.dispose();
    child.kill();
  }
});
