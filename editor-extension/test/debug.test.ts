// The podside debug type: the backend resolves, the adapter is remembered, the end stops the session.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PodsideDebug, runtimeFor } from "../src/debug/launch";
import type { DebugConfiguration } from "../src/seam";
import { FakeBackend, FakeSeam } from "./fakes";

const LAUNCH = { type: "podside", request: "launch", name: "blog", runtime: "python", target: "deployment/blog", program: "/src/app.py" };
const RESOLVED = {
  debugConfiguration: { type: "podside", request: "launch", name: "blog", runtime: "python", podsideSessionId: "s1" },
  adapter: { command: ["/venv/bin/python", "-m", "debugpy.adapter"] },
  sessionId: "s1",
};

test("a podside launch is resolved by the backend with the default mode", async () => {
  const seam = new FakeSeam();
  seam.settings.defaultMode = "off";
  const backend = new FakeBackend({ "podside.resolveLaunch": RESOLVED });
  const debug = new PodsideDebug(seam, backend);
  const configuration = await debug.resolve(undefined, LAUNCH);
  assert.deepEqual(configuration, RESOLVED.debugConfiguration);
  assert.deepEqual(backend.calls[0], ["podside.resolveLaunch", { mode: "off", ...LAUNCH }]);
  assert.deepEqual(debug.adapter(configuration!), RESOLVED.adapter);
});

test("a resolved configuration is not resolved twice", async () => {
  const backend = new FakeBackend({});
  const debug = new PodsideDebug(new FakeSeam(), backend);
  const configuration = await debug.resolve(undefined, RESOLVED.debugConfiguration);
  assert.deepEqual(configuration, RESOLVED.debugConfiguration);
  assert.equal(backend.calls.length, 0);
});

test("a backend error cancels the launch and shows its one line", async () => {
  const seam = new FakeSeam();
  const debug = new PodsideDebug(seam, new FakeBackend({ "podside.resolveLaunch": new Error("mode 'steal' is not one of mirror, off") }));
  assert.equal(await debug.resolve(undefined, LAUNCH), undefined);
  assert.deepEqual(seam.errors, ["mode 'steal' is not one of mirror, off"]);
});

test("the end of the debug session stops the podside session", async () => {
  const backend = new FakeBackend({ "podside.resolveLaunch": RESOLVED, "podside.stopSession": {} });
  const debug = new PodsideDebug(new FakeSeam(), backend);
  const configuration = await debug.resolve(undefined, LAUNCH);
  debug.terminated(configuration!, "terminate");
  assert.deepEqual(backend.calls.at(-1), ["podside.stopSession", { sessionId: "s1" }]);
  assert.equal(debug.adapter(configuration!), undefined);
});

test("a debug adapter that cannot start stops the podside session", async () => {
  const backend = new FakeBackend({ "podside.resolveLaunch": RESOLVED, "podside.stopSession": {} });
  const seam = new FakeSeam();
  const debug = new PodsideDebug(seam, backend);
  const configuration = await debug.resolve(undefined, LAUNCH);
  debug.adapterFailed(configuration!, "Error: podside: the debug adapter exited (1): no dlv");
  assert.deepEqual(backend.calls.at(-1), ["podside.stopSession", { sessionId: "s1" }]);
  assert.equal(debug.adapter(configuration!), undefined);
  assert.match(seam.output.at(-1) ?? "", /session s1 ends: .*no dlv/);
});

const HELD = { ...LAUNCH, holdUntilAttached: true };
const ATTACH = {
  debugConfiguration: { type: "podside", request: "attach", name: "blog", connect: { host: "127.0.0.1", port: 5999 }, podsideSessionId: "s2" },
  adapter: { command: ["/venv/bin/python", "-m", "debugpy.adapter"] },
  sessionId: "s2",
};

function attachBackend(): FakeBackend {
  return new FakeBackend({ "podside.resolveLaunch": ATTACH, "podside.debuggerAttached": {}, "podside.stopSession": {} });
}

/** VS Code's two steps for a held launch; answers the attach configuration the extension started. */
async function launchHeld(seam: FakeSeam, debug: PodsideDebug): Promise<DebugConfiguration> {
  const first = await debug.resolve(undefined, HELD);
  assert.deepEqual(first, HELD, "the backend runs the program only once paths are substituted");
  assert.equal(await debug.resolveSubstituted(undefined, first!), undefined, "the launch gives way to the attach");
  const attach = seam.started.at(-1)!;
  assert.deepEqual(await debug.resolve(undefined, attach), attach);
  return attach;
}

test("a held launch runs the program through the backend, then attaches", async () => {
  const seam = new FakeSeam();
  const backend = attachBackend();
  const debug = new PodsideDebug(seam, backend);
  const configuration = await launchHeld(seam, debug);
  assert.deepEqual(configuration, ATTACH.debugConfiguration);
  assert.deepEqual(backend.calls[0], ["podside.resolveLaunch", { mode: "mirror", ...HELD }]);
  assert.deepEqual(debug.adapter(configuration), ATTACH.adapter);
});

test("a debugger with its breakpoints set tells the backend it is attached", async () => {
  const backend = attachBackend();
  const seam = new FakeSeam();
  const debug = new PodsideDebug(seam, backend);
  const configuration = await launchHeld(seam, debug);
  debug.configured(configuration!);
  assert.deepEqual(backend.calls.at(-1), ["podside.debuggerAttached", { sessionId: "s2", attached: true }]);
});

test("disconnecting from a held session detaches; a waiting request attaches the same configuration again", async () => {
  const seam = new FakeSeam();
  const backend = attachBackend();
  const debug = new PodsideDebug(seam, backend);
  const configuration = await launchHeld(seam, debug);
  await debug.attach("s2", "a request waits");
  assert.equal(seam.started.length, 1, "the first debug session is still on");
  debug.terminated(configuration!, "detach");
  assert.deepEqual(backend.calls.at(-1), ["podside.debuggerAttached", { sessionId: "s2", attached: false }]);
  assert.ok(!backend.calls.some(([name]) => name === "podside.stopSession"));
  await debug.attach("s2", "a request from 10.0.0.7:5000 to port 8080 waits");
  await debug.attach("s2", "another one");
  assert.deepEqual(seam.started, [ATTACH.debugConfiguration, ATTACH.debugConfiguration], "attached once more, with the adapter kept");
  assert.deepEqual(debug.adapter(configuration!), ATTACH.adapter);
});

test("stopping a held session's debugger stops the session, and nothing attaches to it again", async () => {
  const seam = new FakeSeam();
  const backend = attachBackend();
  const debug = new PodsideDebug(seam, backend);
  const configuration = await launchHeld(seam, debug);
  debug.terminated(configuration!, "terminate");
  assert.deepEqual(backend.calls.at(-1), ["podside.stopSession", { sessionId: "s2" }]);
  await debug.attach("s2", "late");
  assert.equal(seam.started.length, 1);
});

test("the runtime follows the program's file name", () => {
  assert.equal(runtimeFor("/src/app.py"), "python");
  assert.equal(runtimeFor("/src/index.mjs"), "node");
  assert.equal(runtimeFor("/src/main.go"), "go");
  assert.equal(runtimeFor("/src/server"), "command");
});
