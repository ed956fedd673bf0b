// Which podside serves the extension (the podside.path setting, else where installs put it),
// and whether the backend that answered is one this extension can work with.
import { execFile } from "node:child_process";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import which from "which";
import type { Backend, Seam } from "./seam";

/** `command ...args lsp` starts the backend. */
export interface BackendCommand {
  command: string;
  args: string[];
}

export interface Surroundings {
  /** The podside.path setting; empty when not set. */
  setting: string;
  /** The environment the backend runs in: its PATH and HOME are the ones searched. */
  env: NodeJS.ProcessEnv;
  workspaceFolders: string[];
  /** The interpreter the Python extension has selected; asked only when it is needed. */
  selectedPython: () => Promise<string | undefined>;
}

export type Lookup = { found: BackendCommand } | { problem: string };

export const NOT_FOUND =
  'podside: the podside command was not found; install it with "pip install podside" (or "pipx install podside"), or set podside.path';

/** Enough for a cold interpreter to import podside on a loaded machine. */
const IMPORT_TIMEOUT_MS = 30_000;

/**
 * The podside to start, in the order a user expects: the setting; `podside` on PATH; the
 * workspace's virtual environment; the Python extension's interpreter; a `pip install --user`
 * (whose ~/.local/bin VS Code's PATH often lacks); `python3 -m podside`. Files are tried before
 * interpreters, which cost a process each.
 */
export async function findBackend(surroundings: Surroundings): Promise<Lookup> {
  const { setting, env, workspaceFolders } = surroundings;
  const home = env.HOME ?? homedir();
  const path = env.PATH ?? "";
  if (setting.trim() !== "") {
    const found = await which(settingPath(setting.trim(), home, workspaceFolders), { path, nothrow: true });
    if (found === null) return { problem: `podside: podside.path is "${setting}", which is not an executable program; correct it, or clear it to look podside up` };
    return { found: { command: found, args: [] } };
  }
  const programs = [
    "podside",
    ...workspaceFolders.flatMap((folder) => [join(folder, ".venv", "bin", "podside"), join(folder, "venv", "bin", "podside")]),
  ];
  for (const program of programs) {
    const found = await which(program, { path, nothrow: true });
    if (found !== null) return { found: { command: found, args: [] } };
  }
  const selected = await surroundings.selectedPython();
  if (selected !== undefined && (await importsPodside(selected, env))) return { found: { command: selected, args: ["-m", "podside"] } };
  const userInstall = await which(join(home, ".local", "bin", "podside"), { nothrow: true });
  if (userInstall !== null) return { found: { command: userInstall, args: [] } };
  const python3 = await which("python3", { path, nothrow: true });
  if (python3 !== null && (await importsPodside(python3, env))) return { found: { command: python3, args: ["-m", "podside"] } };
  return { problem: NOT_FOUND };
}

/** The backend's command line from the seam's setting and folders; a problem is shown there, with the setting's button. */
export async function lookUpBackend(seam: Seam, env: NodeJS.ProcessEnv): Promise<Lookup> {
  const lookup = await findBackend({
    setting: seam.setting("path", ""),
    env,
    workspaceFolders: seam.workspaceFolders(),
    selectedPython: () => seam.selectedPython(),
  });
  if ("problem" in lookup) seam.showSettingError(lookup.problem, "podside.path");
  return lookup;
}

/** With no podside to run, every backend call fails with the line that says how to get one. */
export function unavailableBackend(problem: string): Backend {
  return {
    command: () => Promise.reject(new Error(problem)),
    onNotification: () => undefined,
  };
}

/** The setting as a path: `~` is the home folder, a relative path is the workspace's; a bare name is looked up on PATH. */
function settingPath(setting: string, home: string, workspaceFolders: string[]): string {
  if (setting === "~" || setting.startsWith("~/")) return join(home, setting.slice(1));
  if (isAbsolute(setting) || !setting.includes("/")) return setting;
  return resolve(workspaceFolders[0] ?? process.cwd(), setting);
}

/** The interpreter runs podside's command (not only imports the package). */
function importsPodside(python: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  return new Promise((done) => {
    execFile(python, ["-m", "podside", "--version"], { env, timeout: IMPORT_TIMEOUT_MS }, (error) => done(error === null));
  });
}

/** The backend's commands this extension sends (`workspace/executeCommand`). */
export const BACKEND_COMMANDS = [
  "podside.listContexts",
  "podside.listNamespaces",
  "podside.listTargets",
  "podside.resolveLaunch",
  "podside.debuggerAttached",
  "podside.stopSession",
  "podside.listSessions",
  "podside.replayRequest",
];

/** What of the backend's `initialize` answer the check reads. */
export interface BackendAnnouncement {
  serverInfo?: { version?: string };
  capabilities: { executeCommandProvider?: { commands: string[] } };
}

/**
 * One line when the backend cannot serve this extension: it lacks commands the extension
 * sends, or it is another major.minor release (before 1.0, minor releases may change the
 * commands' arguments); a different patch release says nothing.
 */
export function mismatch(extensionVersion: string, announcement: BackendAnnouncement, backend: string): string | undefined {
  const backendVersion = announcement.serverInfo?.version ?? "of an unknown version";
  const announced = new Set(announcement.capabilities.executeCommandProvider?.commands ?? []);
  const missing = BACKEND_COMMANDS.filter((command) => !announced.has(command));
  const install = `install the same release ("pip install podside==${extensionVersion}") or set podside.path`;
  if (missing.length > 0) {
    return `podside: ${backend} is podside ${backendVersion}, which lacks ${missing.join(", ")} that this extension (${extensionVersion}) uses; ${install}`;
  }
  if (release(backendVersion) !== release(extensionVersion)) {
    return `podside: ${backend} is podside ${backendVersion} and this extension is ${extensionVersion}: they may not work together; ${install}`;
  }
  return undefined;
}

/** major.minor of a version. */
function release(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}
