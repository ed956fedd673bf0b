// Activation registers everything the manifest declares, and notifications reach the views.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { registerAll } from "../src/activate";
import { BLOG, BLOG_POD, FakeBackend, FakeSeam, sandboxBackend } from "./fakes";

const ROOT = join(__dirname, "..", "..");
const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

test("every command and view in package.json is registered", () => {
  const seam = new FakeSeam();
  registerAll(seam, sandboxBackend());
  const commands = manifest.contributes.commands.map((command: { command: string }) => command.command).sort();
  assert.deepEqual([...seam.commands.keys()].sort(), commands);
  assert.deepEqual([...seam.trees.keys()].sort(), manifest.contributes.views.podside.map((view: { id: string }) => view.id).sort());
  assert.ok(seam.debug.has("podside"));
});

test("the configuration snippets are the launch templates' snippets", () => {
  const snippets = ["python", "node", "go", "command"].map(
    (runtime) => JSON.parse(readFileSync(join(ROOT, "..", "launch_templates", `${runtime}.json`), "utf8")).snippet,
  );
  assert.deepEqual(manifest.contributes.debuggers[0].configurationSnippets, snippets);
});

test("every launch configuration field a template reads is described in package.json", () => {
  // Filled in by the backend or the extension, never written by the user.
  const computed = new Set(["adapterEnv", "programEnv", "programFolder", "exec", "execProgram", "execArgs", "execLine", "sessionId", "backendPython", "debugPort", "debugpyPath"]);
  const properties = manifest.contributes.debuggers[0].configurationAttributes.launch.properties;
  for (const runtime of ["python", "node", "go", "command"]) {
    const template = readFileSync(join(ROOT, "..", "launch_templates", `${runtime}.json`), "utf8");
    for (const [, field] of template.matchAll(/\{\{(\w+)[?=}]/g)) {
      if (field === undefined || computed.has(field) || field === "name") continue;
      assert.ok(field in properties, `${runtime}.json reads "${field}", which package.json does not describe`);
    }
  }
});

test("breakpoints can be set in every language the debug type serves, without another extension", () => {
  const languages = manifest.contributes.breakpoints.map((breakpoint: { language: string }) => breakpoint.language).sort();
  assert.deepEqual(languages, [...manifest.contributes.debuggers[0].languages].sort());
});

test("session state goes to the status bar, and a failure to a notification", () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({});
  registerAll(seam, backend);
  backend.notify("podside/sessionState", { sessionId: "s1", target: "deployment/blog", state: "running", message: "" });
  assert.equal(seam.status, "$(plug) podside: deployment/blog running");
  backend.notify("podside/sessionState", { sessionId: "s1", target: "deployment/blog", state: "failed", message: "no pod of deployment/blog is running" });
  assert.deepEqual(seam.errors, ["podside: deployment/blog: no pod of deployment/blog is running"]);
});

test("traffic notifications appear newest first in the traffic view", async () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({});
  registerAll(seam, backend);
  const request = { sessionId: "s1", time: "t", method: "GET", status: 200, duration: 0.004, mode: "mirror" };
  backend.notify("podside/traffic", { ...request, id: "r1", path: "/" });
  backend.notify("podside/traffic", { ...request, id: "r2", path: "/posts" });
  const traffic = seam.trees.get("podside.traffic")!;
  const items = (await traffic.children(undefined)).map((event) => traffic.item(event));
  assert.deepEqual(items.map((item) => [item.label, item.description]), [["GET /posts", "200 4 ms · mirror"], ["GET /", "200 4 ms · mirror"]]);
});

test("Run with cluster context on a workload asks for the program and starts a podside launch", async () => {
  const seam = new FakeSeam();
  registerAll(seam, sandboxBackend());
  seam.program = "/src/app.py";
  await seam.commands.get("podside.runWithClusterContext")!({ kind: "workload", context: "podside-sandbox", target: BLOG, pods: [BLOG_POD] });
  assert.deepEqual(seam.started, [
    {
      type: "podside",
      request: "launch",
      name: "Run with cluster context: deployment/blog",
      runtime: "python",
      target: "deployment/blog",
      context: "podside-sandbox",
      namespace: "default",
      program: "/src/app.py",
    },
  ]);
});

test("Run with cluster context prefers the workspace's configuration for that target", async () => {
  const seam = new FakeSeam();
  registerAll(seam, sandboxBackend());
  seam.configurations = [{ type: "podside", request: "launch", name: "blog", runtime: "python", target: "deployment/blog", program: "app.py", args: ["-v"] }];
  await seam.commands.get("podside.runWithClusterContext")!({ kind: "workload", context: "podside-sandbox", target: BLOG, pods: [] });
  assert.deepEqual(seam.started[0]?.args, ["-v"]);
  assert.equal(seam.started[0]?.context, "podside-sandbox");
});

test("an attach request from the backend starts the debugger; program output goes to the output channel", async () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({
    "podside.resolveLaunch": {
      debugConfiguration: { type: "podside", request: "attach", name: "blog", podsideSessionId: "s9" },
      adapter: null,
      sessionId: "s9",
    },
    "podside.debuggerAttached": {},
  });
  registerAll(seam, backend);
  const hooks = seam.debug.get("podside")!;
  const launch = { type: "podside", request: "launch", name: "blog", runtime: "python", holdUntilAttached: true };
  await hooks.resolveSubstituted(undefined, (await hooks.resolve(undefined, launch))!);
  const configuration = seam.started[0]!;
  hooks.terminated(configuration, "detach");
  backend.notify("podside/attachDebugger", { sessionId: "s9", reason: "a request waits" });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(seam.started, [configuration, configuration]);
  backend.notify("podside/output", { sessionId: "s9", line: "listening on :8080" });
  assert.equal(seam.output.at(-1), "listening on :8080");
});

test("Stop session from the palette stops every live session", async () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({
    "podside.listSessions": [
      { sessionId: "s1", target: "deployment/blog", state: "running", message: "" },
      { sessionId: "s2", target: "deployment/blog", state: "stopped", message: "stopped" },
    ],
    "podside.stopSession": {},
  });
  registerAll(seam, backend);
  await seam.commands.get("podside.stopSession")!();
  assert.deepEqual(backend.calls.slice(1), [["podside.stopSession", { sessionId: "s1" }]]);
});

test("the config file's schema is registered for .podside/config.json and is the one podside ships", () => {
  const [validation] = manifest.contributes.jsonValidation;
  assert.deepEqual(validation.fileMatch, ["**/.podside/config.json"]);
  // esbuild.mjs puts it where the manifest says, from the Python package's copy.
  assert.equal(validation.url, "./dist/config.schema.json");
  const source = readFileSync(join(ROOT, "..", "server", "podside", "config.schema.json"), "utf8");
  const schema = JSON.parse(source);
  assert.equal(schema.$id, "https://podside.dev/schema/config.json");
  assert.ok("hold-until-attached" in schema.properties && "target" in schema.properties);
});

test("a held session's status says whether a debugger is attached", () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({});
  registerAll(seam, backend);
  const state = { sessionId: "s2", target: "deployment/blog", state: "running", message: "", attachable: true };
  backend.notify("podside/sessionState", { ...state, debuggerAttached: false });
  assert.equal(seam.status, "$(plug) podside: deployment/blog running, requests wait for a debugger");
  backend.notify("podside/sessionState", { ...state, debuggerAttached: true });
  assert.equal(seam.status, "$(plug) podside: deployment/blog running, debugger attached");
});

test("the Traffic view lists requests newest first, without the kubelet's probes", async () => {
  const seam = new FakeSeam();
  const backend = new FakeBackend({});
  registerAll(seam, backend);
  const request = { sessionId: "s1", time: "t", status: 200, duration: 0.002, mode: "mirror" };
  backend.notify("podside/traffic", { ...request, id: "1", method: "GET", path: "/" });
  backend.notify("podside/traffic", { ...request, id: "2", method: "GET", path: "/healthz", probe: true });
  backend.notify("podside/traffic", { ...request, id: "3", method: "POST", path: "/posts" });
  const traffic = seam.trees.get("podside.traffic")!;
  const rows = await traffic.children(undefined);
  assert.deepEqual(rows.map((row) => traffic.item(row).label), ["POST /posts", "GET /"]);
});
