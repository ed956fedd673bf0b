// The one seam between podside's logic and VS Code: every editor call the extension makes
// is a method here. `vscodeSeam.ts` implements it with the real API; unit tests pass fakes.

/** A debug configuration as VS Code passes it around: plain JSON. */
export type DebugConfiguration = { type: string; name: string; request: string; [key: string]: unknown };

/** What the editor shows for one tree node, without VS Code types. */
export interface TreeItemSpec {
  label: string;
  description?: string;
  tooltip?: string;
  /** Has children to expand. */
  expandable: boolean;
  /** Matched by `viewItem == ...` in package.json menus. */
  contextValue?: string;
  /** A codicon name such as "server-environment". */
  icon?: string;
}

/** The model behind a tree view: pure, so tests can walk it. */
export interface TreeModel<Node> {
  children(node: Node | undefined): Promise<Node[]>;
  item(node: Node): TreeItemSpec;
  /** Called by the model when its content changed; the seam sets it. */
  onChanged?: () => void;
}

/** How to start a debug adapter that VS Code has no extension for (see launch_templates/). */
export interface AdapterSpec {
  /** The adapter's program; absent when `server` is given. */
  command?: string[];
  /** An adapter that already listens here (the program's own, e.g. `debugpy --listen`). */
  server?: { host: string; port: number };
  /** When set, the adapter listens on TCP and prints its host and port matching this. */
  listeningPattern?: string;
  /** More environment variables for the adapter's process. */
  env?: Record<string, string>;
}

/** How a debug session ended: the user stopped the program, or only the debugger left. */
export type DebugEnding = "terminate" | "detach";

export interface DebugHooks {
  /** Turns a `podside` launch configuration into the real one; undefined cancels. */
  resolve(folder: string | undefined, configuration: DebugConfiguration): Promise<DebugConfiguration | undefined>;
  /** The same after VS Code filled in ${workspaceFolder} and the like. */
  resolveSubstituted(folder: string | undefined, configuration: DebugConfiguration): Promise<DebugConfiguration | undefined>;
  /** The adapter for an already resolved `podside` configuration. */
  adapter(configuration: DebugConfiguration): AdapterSpec | undefined;
  /** A debug session of any type has its breakpoints set (its configurationDone was answered). */
  configured(configuration: DebugConfiguration): void;
  /** A debug session of any type ended. */
  terminated(configuration: DebugConfiguration, ending: DebugEnding): void;
  /** The adapter of a `podside` debug session could not start (`message` says why). */
  adapterFailed(configuration: DebugConfiguration, message: string): void;
}

export interface Seam {
  registerCommand(name: string, run: (...args: unknown[]) => unknown): void;
  registerTree<Node>(viewId: string, model: TreeModel<Node>): void;
  registerDebug(type: string, hooks: DebugHooks): void;
  showError(message: string): void;
  /** An error the user fixes in a setting: the notification has a button that opens it. */
  showSettingError(message: string, setting: string): void;
  showWarning(message: string): void;
  showInfo(message: string): void;
  setStatus(text: string | undefined, tooltip?: string): void;
  /** A line of a program's output, for the podside output channel. */
  appendOutput(line: string): void;
  startDebugging(configuration: DebugConfiguration): Promise<boolean>;
  /** The workspace's launch configurations (launch.json), any type. */
  launchConfigurations(): DebugConfiguration[];
  pickProgram(title: string): Promise<string | undefined>;
  setting<T>(name: string, fallback: T): T;
  /** The workspace's folders on disk. */
  workspaceFolders(): string[];
  /** The interpreter the Python extension (ms-python.python) has selected, if it is installed. */
  selectedPython(): Promise<string | undefined>;
  /** This extension's version (package.json). */
  extensionVersion(): string;
}

/** The backend (`podside lsp`), seen as JSON in and out. */
export interface Backend {
  command<T>(name: string, params?: Record<string, unknown>): Promise<T>;
  onNotification(method: string, handler: (params: any) => void): void;
}

/** A backend failure as the one line the user should read. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const lines = text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  return lines[0] ?? "podside: unknown error";
}
