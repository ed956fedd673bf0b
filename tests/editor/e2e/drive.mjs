// Drives code-server in Debian's chromium through the two milestones of make e2e:
// 1. the podside view shows the sandbox's deployment/blog;
// 2. "Run with cluster context" on deployment/blog stops at a breakpoint in the blog's request
//    handler when a request reaches the pod (the sandbox's traffic deployment sends one every
//    second), and the Call Stack view shows the handler's frame.
// Run by ./run, which starts code-server and passes URL, ARTIFACTS, BROWSER_PROFILE, WORKSPACE
// and CONFIGURATION (the launch configuration's name).
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const { URL: url, ARTIFACTS: artifacts, BROWSER_PROFILE: profile, WORKSPACE: workspace, CONFIGURATION: configuration } = process.env;
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

  await runCommand("Debug: Select and Start Debugging", configuration);
  debugging = true;
  // Away from where the debug toolbar appears: no hover tooltip in the screenshot.
  await page.mouse.move(700, 890);
  await runCommand("View: Show Run and Debug");
  const frame = page
    .locator(".debug-call-stack .stack-frame")
    .filter({ hasText: HANDLER })
    .filter({ hasText: new RegExp(`app\\.py\\s*${line}:`) })
    .first();
  await waitLogging(frame, BREAKPOINT_TIMEOUT, "the debugger to stop in " + HANDLER);
  // The top frame is selected and its line shown in the editor when the debugger stops.
  await page.locator(".monaco-editor .codicon-debug-stackframe").first().waitFor();
  await screenshot("stopped-at-breakpoint");
  console.log(`e2e: the debugger stopped in ${HANDLER}; the call stack shows ${(await frame.innerText()).replace(/\s+/g, " ")}`);

  await stopDebugging();
  debugging = false;
  await screenshot("stopped-session");
  console.log("e2e: the debug session ended");
} catch (error) {
  await screenshot("failure").catch(() => {});
  throw error;
} finally {
  // Never leave the debuggee running: its own process group is outside code-server's.
  if (debugging) await stopDebugging().catch(() => {});
  await browser.close();
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
  await page.keyboard.press("Escape");
  await page.keyboard.press("F1");
  const input = quickInput.locator("input");
  await input.waitFor();
  await input.fill(prefix + text);
  if (rowText === undefined) {
    await input.press("Enter");
  } else {
    // Click the entry itself: Enter takes the first, which fuzzy matching may rank higher.
    await quickRow(rowText).click();
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
