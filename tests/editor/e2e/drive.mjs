// Drives code-server in Debian's chromium through the milestones of make e2e:
// 1. the podside view shows the sandbox's deployment/blog;
// 2. "Run with cluster context" (the ▷ of deployment/blog in the podside view: the workspace's
//    first launch configuration for it) stops at a breakpoint in the blog's request handler
//    when a request reaches the pod (the sandbox's traffic deployment sends one every second),
//    and the Call Stack view shows the handler's frame;
// 3. with holdUntilAttached (HOLD_CONFIGURATION), the first request waits for the debugger,
//    which attaches by itself and stops in the handler;
// 4. with the traffic deployment scaled to 0 and the debugger disconnected, the Traffic view
//    lists the requests, and "Replay with debugger" on one attaches the debugger again and
//    stops in the handler on the replayed request;
// 5. disconnected again, traffic back: the next request brings the debugger back by itself;
//    "podside: Stop session" ends it all;
// 6. the config file's schema is registered: a bad value in .podside/config.json is a problem;
// 7. the Node.js template (js-debug) and 8. the Go template (delve's DAP server, started by
//    the extension under podside exec) stop in their programs' handlers on mirrored requests;
// 9. Go with holdUntilAttached (GO_HOLD_CONFIGURATION): delve's headless server, attached to
//    when a request waits.
// Run by ./run, which starts code-server and passes URL, ARTIFACTS, BROWSER_PROFILE, WORKSPACE,
// CONFIGURATION, HOLD_CONFIGURATION, NODE_CONFIGURATION, GO_CONFIGURATION and GO_HOLD_CONFIGURATION (launch
// configuration names) and PYTHON (podside's).
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";

const {
  URL: url,
  ARTIFACTS: artifacts,
  BROWSER_PROFILE: profile,
  WORKSPACE: workspace,
  CONFIGURATION: configuration,
  HOLD_CONFIGURATION: holdConfiguration,
  NODE_CONFIGURATION: nodeConfiguration,
  GO_CONFIGURATION: goConfiguration,
  GO_HOLD_CONFIGURATION: goHoldConfiguration,
  PYTHON: python,
} = process.env;
const STEP_TIMEOUT = 60_000;
// Agent start-up in the pod, debugpy, the program's listen and the first mirrored request.
const BREAKPOINT_TIMEOUT = 180_000;
const HANDLER = "do_GET";

mkdirSync(profile, { recursive: true });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = browser.pages()[0] ?? (await browser.newPage());
page.setDefaultTimeout(STEP_TIMEOUT);
let shot = 0;
const screenshot = (name) => page.screenshot({ path: join(artifacts, `${String(++shot).padStart(2, "0")}-${name}.png`) });
const sidebar = page.locator('[id="workbench.parts.sidebar"]');
const quickInput = page.locator(".quick-input-widget");
let debugging = false;
let holding = false;
let trafficScaled = false;

try {
  await waitForServer(url);
  await page.goto(url);
  await page.locator(".monaco-workbench").waitFor();
  await screenshot("workbench");

  // Milestone 1. The activity bar entry of the podside view container.
  await page.locator('.activitybar [aria-label^="podside"]').first().click();
  // A row by its label exactly: the shared kubeconfig may hold podside-sandbox-* contexts too.
  const row = (label) =>
    sidebar.getByRole("treeitem").filter({ has: page.getByText(label, { exact: true }) }).first();
  await row("podside-sandbox").waitFor();
  await screenshot("contexts");
  await row("podside-sandbox").click();
  await row("default").click();
  // The tree renders only the rows in view, and other contexts may push the workloads out of
  // it: walk down from the namespace, which scrolls, until the blog's row is there.
  const blog = row("deployment/blog");
  for (let step = 0; step < 20 && !(await blog.isVisible()); step++) {
    await page.keyboard.press("ArrowDown");
    await page.waitForTimeout(200);
  }
  await blog.waitFor();
  await screenshot("targets");
  console.log("e2e: the podside view shows deployment/blog of the sandbox");

  // E2E_SKIP_PYTHON=1 skips milestones 2 to 5, to work on the others.
  if (process.env.E2E_SKIP_PYTHON !== "1") {
    // Milestone 2. The first line of the handler's body, from the file the workspace holds.
    const lines = readFileSync(join(workspace, "app.py"), "utf8").split("\n");
    const line = lines.findIndex((text) => text.includes(`def ${HANDLER}(`)) + 2;
    if (line < 2) throw new Error(`app.py has no ${HANDLER}`);
    // Quick Open without its ">" prefix is "Go to File"; with ":" it is "Go to Line".
    await quickOpen("", "app.py", "app.py");
    await page.locator(".tab.active").filter({ hasText: "app.py" }).waitFor();
    await quickOpen("", `:${line}`);
    await runCommand("Debug: Toggle Breakpoint");
    await page.locator(".monaco-editor .codicon-debug-breakpoint").first().waitFor();
    await screenshot("breakpoint-set");
    console.log(`e2e: breakpoint set in app.py line ${line} (${HANDLER})`);

    // "Run with cluster context" on deployment/blog: the ▷ of its row in the podside view,
    // which starts the workspace's launch configuration for that target (the first one).
    await blog.hover();
    await blog.locator('.action-label[aria-label*="Run with cluster context"]').click();
    debugging = true;
    console.log(`e2e: Run with cluster context on deployment/blog started "${configuration}"`);
    // Away from where the debug toolbar appears: no hover tooltip in the screenshot.
    await page.mouse.move(700, 890);
    await runCommand("View: Show Run and Debug");
    const frame = stackFrame(HANDLER, "app.py", line);
    await waitLogging(frame, BREAKPOINT_TIMEOUT, "the debugger to stop in " + HANDLER);
    // The top frame is selected and its line shown in the editor when the debugger stops.
    await page.locator(".monaco-editor .codicon-debug-stackframe").first().waitFor();
    await screenshot("stopped-at-breakpoint");
    // The backend's notifications reach the extension: the status bar shows the session's state.
    await page.locator(".statusbar").getByText("podside: deployment/blog running").waitFor();
    console.log(`e2e: the debugger stopped in ${HANDLER}; the call stack shows ${(await frame.innerText()).replace(/\s+/g, " ")}`);

    await stopDebugging();
    debugging = false;
    await screenshot("stopped-session");
    console.log("e2e: the debug session ended");

    // From here on the breakpoint is in the branch of GET /, which only the traffic deployment's
    // requests (and replays of them) take: the kubelet's probes (GET /healthz every 2 s) reach
    // the program too and must not stop it.
    await quickOpen("", `:${line}`);
    await runCommand("Debug: Toggle Breakpoint");
    const rootLine = lines.findIndex((text) => text.includes('elif self.path == "/":')) + 2;
    if (rootLine < 2) throw new Error("app.py has no branch for GET /");
    await quickOpen("", `:${rootLine}`);
    await runCommand("Debug: Toggle Breakpoint");
    const rootFrame = stackFrame(HANDLER, "app.py", rootLine);

    // Milestone 3. The program runs with debugpy's server; the first request waits for the attach.
    await runCommand("Debug: Select and Start Debugging", holdConfiguration);
    holding = true;
    await page.mouse.move(700, 890);
    await runCommand("View: Show Run and Debug");
    await waitLogging(rootFrame, BREAKPOINT_TIMEOUT, "the attached debugger to stop in " + HANDLER);
    await screenshot("held-request-stopped");
    console.log(`e2e: holdUntilAttached: a held request waited for the debugger, which attached and stopped in ${HANDLER} line ${rootLine}`);

    // Milestone 4. No more traffic: the requests already sent are let through; then the Traffic
    // view, and a replay with the debugger is the only GET / that can stop it.
    scaleTraffic(0);
    trafficScaled = true;
    await drainBreakpoints(rootFrame);
    await page.locator('.activitybar [aria-label^="podside"]').first().click();
    const trafficPane = sidebar.locator(".pane").filter({ has: page.locator(".pane-header", { hasText: "Traffic" }) });
    const trafficRow = trafficPane
      .getByRole("treeitem")
      .filter({ has: page.getByText("GET /", { exact: true }) })
      .first();
    // Newest first, and the kubelet's probes come every 2 s: scroll down the list (it renders
    // only the rows in view) until a GET / is there.
    await trafficPane.getByRole("treeitem").first().hover();
    for (let step = 0; step < 100 && !(await trafficRow.isVisible()); step++) {
      await page.mouse.wheel(0, 150);
      await page.waitForTimeout(100);
    }
    await trafficRow.waitFor();
    const rowText = (await trafficRow.innerText()).replace(/\s+/g, " ");
    if (!/200/.test(rowText) || !/mirror/.test(rowText)) throw new Error(`the traffic row says ${rowText}`);
    await screenshot("traffic-view");
    console.log(`e2e: the Traffic view lists the session's requests, e.g. "${rowText}"`);
    await trafficRow.hover();
    await trafficRow.locator('.action-label[aria-label="Replay with debugger"]').click();
    await waitLogging(rootFrame, BREAKPOINT_TIMEOUT, "the replayed request to stop in " + HANDLER);
    await screenshot("replay-stopped");
    await resume();
    await page.locator(".notifications-toasts").getByText("podside: replayed GET /: 200").waitFor();
    console.log(`e2e: Replay with debugger stopped in ${HANDLER} on the replayed request, which then answered 200`);

    // Milestone 5. Disconnect leaves the program running; with traffic back, the next request
    // finds no debugger, waits, and the debugger attaches again and stops.
    // The kubelet's probes (GET /healthz every 2 s) do not: they reach the program without one.
    await page.locator(".debug-toolbar .codicon-debug-disconnect").click();
    const waiting = page.locator(".statusbar").getByText("podside: deployment/blog running, requests wait for a debugger");
    await waiting.waitFor();
    await page.waitForTimeout(5000);
    if (!(await waiting.isVisible()) || (await page.locator(".debug-toolbar").isVisible())) {
      throw new Error("a debugger came back with no request but the kubelet's probes");
    }
    console.log("e2e: Disconnect left the program running; 5 s of the kubelet's probes later, requests still wait for a debugger");
    scaleTraffic(1);
    trafficScaled = false;
    await waitLogging(rootFrame, BREAKPOINT_TIMEOUT, "a held request to bring the debugger back");
    await page.locator(".statusbar").getByText("podside: deployment/blog running, debugger attached").waitFor();
    await screenshot("reattached");
    console.log("e2e: a request that waited attached the debugger again, which stopped in " + HANDLER);
    // Quiet again first: each request that stops the debugger takes the focus, closing the
    // command palette before the command can be picked.
    scaleTraffic(0);
    trafficScaled = true;
    await drainBreakpoints(rootFrame);
    await runCommand("podside: Stop session");
    await page.locator(".debug-toolbar").waitFor({ state: "hidden" });
    holding = false;
    scaleTraffic(1);
    trafficScaled = false;
    console.log("e2e: podside: Stop session ended the program and its debug session");
  }

  // Milestone 7. The Node.js template, launched through js-debug: a breakpoint in its handler.
  await runtimeMilestone(nodeConfiguration, "server.js", "function answer(", "answer");

  // Milestone 8. The Go template: the extension starts delve's DAP server under podside exec in
  // the program's folder; delve builds the program and a mirrored request stops in its handler.
  const goLine = await runtimeMilestone(goConfiguration, "goserver/main.go", "func answer(", "main.answer");

  // Milestone 9. Go with holdUntilAttached: the backend runs `dlv debug --headless`; the first
  // request waits, the debugger attaches to delve's server and stops there (the breakpoint of
  // milestone 8 is still set); podside: Stop session ends it all.
  await runCommand("Debug: Select and Start Debugging", goHoldConfiguration);
  holding = true;
  await page.mouse.move(700, 890);
  const goFrame = stackFrame("main.answer", "main.go", goLine);
  await waitLogging(goFrame, BREAKPOINT_TIMEOUT, "the attached delve to stop in main.answer");
  await screenshot("go-held-request-stopped");
  console.log(`e2e: ${goHoldConfiguration}: a held request waited for the debugger, which attached to delve and stopped in main.answer`);
  await runCommand("podside: Stop session");
  await page.locator(".debug-toolbar").waitFor({ state: "hidden" });
  holding = false;

  // Milestone 6. The config file's schema: a value outside the enum is a problem.
  await quickOpen("", "schema-check/.podside/config.json", "config.json");
  await page.locator(".tab.active").filter({ hasText: "config.json" }).waitFor();
  await page.keyboard.press("Control+Shift+M");
  const problem = page.locator(".markers-panel").getByText(/Value is not accepted/).first();
  await problem.waitFor();
  await screenshot("config-schema");
  console.log(`e2e: .podside/config.json is checked against podside's schema: "${(await problem.innerText()).trim()}"`);
} catch (error) {
  await screenshot("failure").catch(() => {});
  throw error;
} finally {
  // Never leave the debuggee running: its own process group is outside code-server's.
  if (debugging) await stopDebugging().catch(() => {});
  if (holding) await runCommand("podside: Stop session").catch(() => {});
  if (trafficScaled) scaleTraffic(1);
  await browser.close();
}

/**
 * Launches `configuration` with a breakpoint on the first line of the body of the function that
 * `marker` starts in `file` (a workspace path), waits for the debugger to stop there in
 * `handler` on a mirrored request, and stops; returns the line.
 */
async function runtimeMilestone(configuration, file, marker, handler) {
  const name = basename(file);
  const at = readFileSync(join(workspace, file), "utf8").split("\n").findIndex((text) => text.includes(marker)) + 2;
  if (at < 2) throw new Error(`${file} has no ${marker}`);
  await quickOpen("", file, name);
  await page.locator(".tab.active").filter({ hasText: name }).waitFor();
  await quickOpen("", `:${at}`);
  await runCommand("Debug: Toggle Breakpoint");
  await runCommand("Debug: Select and Start Debugging", configuration);
  debugging = true;
  await page.mouse.move(700, 890);
  await runCommand("View: Show Run and Debug");
  const frame = stackFrame(handler, name, at);
  await waitLogging(frame, BREAKPOINT_TIMEOUT, `the ${configuration} debugger to stop in ${handler}`);
  await screenshot(`stopped-${name}`);
  console.log(`e2e: ${configuration}: the debugger stopped in ${handler}; the call stack shows ${(await frame.innerText()).replace(/\s+/g, " ")}`);
  await stopDebugging();
  debugging = false;
  return at;
}

/** The Call Stack's frame of `handler` at line `line` of `file` ("app.py 51:1"; delve gives no column: "main.go 12"). */
function stackFrame(handler, file, line) {
  return page
    .locator(".debug-call-stack .stack-frame")
    .filter({ hasText: handler })
    .filter({ hasText: new RegExp(`${file.replace(".", "\\.")}\\s*${line}\\b`) })
    .first();
}

/** The sandbox's traffic deployment, which sends the blog a request every second, to N pods. */
function scaleTraffic(replicas) {
  const script = [
    "import sys",
    "from kubernetes import client, config",
    "config.load_kube_config(context='podside-sandbox')",
    "client.AppsV1Api().patch_namespaced_deployment_scale('traffic', 'default', {'spec': {'replicas': int(sys.argv[1])}})",
  ].join("\n");
  execFileSync(python, ["-c", script, String(replicas)], { stdio: "inherit" });
}

/** Continue until the debugger has not stopped for a while: requests sent before the scale-down. */
async function drainBreakpoints(frame) {
  for (let quiet = 0; quiet < 3; ) {
    if (await frame.isVisible()) {
      quiet = 0;
      await resume();
    } else {
      quiet++;
    }
    await page.waitForTimeout(1500);
  }
}

/** The debug toolbar's Continue (F5 would reload the browser's page). */
async function resume() {
  await page.locator(".debug-toolbar .codicon-debug-continue").click();
}


/** The debug toolbar's Stop button; the toolbar goes away when the session has ended. */
async function stopDebugging() {
  const toolbar = page.locator(".debug-toolbar");
  await toolbar.locator(".codicon-debug-stop").click();
  await toolbar.waitFor({ state: "hidden" });
}

/** F1 then a command by its title; `choice`: the entry to take in the quick pick it opens. */
async function runCommand(title, choice) {
  await quickOpen(">", title, title, choice === undefined);
  if (choice === undefined) return;
  await quickRow(choice).click();
  await quickInput.waitFor({ state: "hidden" });
}

/** The quick pick's entry whose label is `label` exactly. */
function quickRow(label) {
  return quickInput
    .locator(".quick-input-list .monaco-list-row")
    .filter({ has: page.locator(".label-name").getByText(label, { exact: true }) })
    .first();
}

/**
 * Opens Quick Open (through F1, whose prefix is ">"), types `prefix + text`, waits for a row
 * with `rowText` when given and takes it, else accepts with Enter.
 */
async function quickOpen(prefix, text, rowText, closes = true) {
  // The editor may close the widget under us (a debugger stopping reveals its frame): the whole
  // step is tried again then.
  for (let attempt = 1; ; attempt++) {
    try {
      await quickOpenOnce(prefix, text, rowText, closes);
      return;
    } catch (error) {
      if (error.name !== "TimeoutError" || attempt === 3) throw error;
      console.log(`e2e: the quick input closed before "${prefix}${text}" was taken; again`);
    }
  }
}

async function quickOpenOnce(prefix, text, rowText, closes) {
  const input = quickInput.locator("input");
  // A debug session starting or ending moves the focus and may swallow the key: try again.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press("Escape");
    await page.keyboard.press("F1");
    try {
      await input.waitFor({ timeout: 5_000 });
      break;
    } catch (error) {
      if (error.name !== "TimeoutError" || attempt === 3) throw error;
    }
  }
  await input.fill(prefix + text);
  if (rowText === undefined) {
    // Enter before the list has caught up with the text does nothing: wait for its first row,
    // and press again while the widget stays open (a loaded machine is slow to update it).
    await quickInput.locator(".quick-input-list .monaco-list-row").first().waitFor();
    for (let attempt = 0; attempt < 3; attempt++) {
      await input.press("Enter");
      if (!closes) return;
      try {
        await quickInput.waitFor({ state: "hidden", timeout: 5_000 });
        return;
      } catch (error) {
        if (error.name !== "TimeoutError") throw error;
      }
    }
  } else {
    // Click the entry itself: Enter takes the first, which fuzzy matching may rank higher.
    await quickRow(rowText).click({ timeout: 15_000 });
  }
  if (closes) await quickInput.waitFor({ state: "hidden" });
}

/**
 * Waits for `locator`, saying every 15 s what it waits for, with a screenshot each minute; fails
 * at once when the debugger stops on an exception instead (the program could not start).
 */
async function waitLogging(locator, timeout, what) {
  const deadline = Date.now() + timeout;
  const exception = page.locator(".exception-widget");
  for (let round = 1; ; round++) {
    try {
      await locator.or(exception).first().waitFor({ timeout: Math.min(15_000, Math.max(1, deadline - Date.now())) });
      if (await locator.isVisible()) return;
      throw new Error(`the debugger stopped on an exception: ${(await exception.innerText()).replace(/\s+/g, " ")}`);
    } catch (error) {
      if (error.name !== "TimeoutError") throw error;
      if (Date.now() >= deadline) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}`);
      const status = await page.locator(".statusbar").innerText().catch(() => "");
      console.log(`e2e: still waiting for ${what} (${(round * 15)} s); status bar: ${status.replace(/\s+/g, " ")}`);
      if (round % 4 === 0) await screenshot("waiting");
    }
  }
}

async function waitForServer(address) {
  const deadline = Date.now() + STEP_TIMEOUT;
  for (;;) {
    try {
      if ((await fetch(address)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer at ${address}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
