// Drives code-server in Debian's chromium: the podside view shows the sandbox's targets.
// Run by ./run, which starts code-server and passes URL, ARTIFACTS, BROWSER_PROFILE.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const { URL: url, ARTIFACTS: artifacts, BROWSER_PROFILE: profile } = process.env;
const STEP_TIMEOUT = 60_000;

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

try {
  await waitForServer(url);
  await page.goto(url);
  await page.locator(".monaco-workbench").waitFor();
  await screenshot("workbench");

  // The activity bar entry of the podside view container.
  await page.locator('.activitybar [aria-label^="podside"]').first().click();
  const tree = page.locator('[id="workbench.parts.sidebar"]');
  // A row by its label exactly: the shared kubeconfig may hold podside-sandbox-* contexts too.
  const row = (label) =>
    tree.getByRole("treeitem").filter({ has: page.getByText(label, { exact: true }) }).first();
  await row("podside-sandbox").waitFor();
  await screenshot("contexts");
  await row("podside-sandbox").click();
  await row("default").click();
  await row("deployment/blog").waitFor();
  await screenshot("targets");
  console.log("e2e: the podside view shows deployment/blog of the sandbox");
} catch (error) {
  await screenshot("failure").catch(() => {});
  throw error;
} finally {
  await browser.close();
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
