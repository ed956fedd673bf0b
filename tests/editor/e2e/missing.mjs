// make e2e, before the sandbox: the .vsix in an editor that has no podside to run (no
// podside.path, none on PATH, in the workspace or in HOME). The extension says in one line how
// to install podside, and that notification's button opens the podside.path setting.
// Run by ./run, which starts that code-server and passes URL, ARTIFACTS and BROWSER_PROFILE.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const { URL: url, ARTIFACTS: artifacts, BROWSER_PROFILE: profile } = process.env;
const NOT_FOUND =
  'podside: the podside command was not found; install it with "pip install podside" (or "pipx install podside"), or set podside.path';

mkdirSync(profile, { recursive: true });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
});
const page = browser.pages()[0] ?? (await browser.newPage());
page.setDefaultTimeout(60_000);
try {
  for (let attempt = 0; ; attempt++) {
    try {
      await page.goto(url);
      break;
    } catch (error) {
      if (attempt === 60) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  await page.locator(".monaco-workbench").waitFor();
  const toast = page.locator(".notifications-toasts .notification-list-item").filter({ hasText: "the podside command was not found" });
  await toast.waitFor();
  const shown = (await toast.locator(".notification-list-item-message").innerText()).trim();
  if (shown !== NOT_FOUND) throw new Error(`the notification says ${JSON.stringify(shown)}`);
  await page.screenshot({ path: join(artifacts, "missing-podside.png") });
  console.log(`e2e: without podside the extension says: ${shown}`);
  await toast.getByRole("button", { name: "Open Setting" }).click();
  // The settings editor, searched for the one setting: its row is podside's Path.
  const row = page.locator(".settings-editor .setting-item").filter({ has: page.locator(".setting-item-category", { hasText: "Podside" }) });
  await row.filter({ has: page.locator(".setting-item-label", { hasText: "Path" }) }).first().waitFor();
  await page.screenshot({ path: join(artifacts, "missing-podside-setting.png") });
  console.log("e2e: its button opens the podside.path setting");
} catch (error) {
  const shown = await page.locator(".notifications-toasts .notification-list-item-message").allInnerTexts();
  console.error(`e2e: the notifications say: ${JSON.stringify(shown)}`);
  await page.screenshot({ path: join(artifacts, "missing-podside-failed.png") });
  throw error;
} finally {
  await browser.close();
}
