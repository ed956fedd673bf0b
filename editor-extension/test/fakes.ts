// Fakes for the seam and the backend: they record what the extension asked for.
import type { Backend, DebugConfiguration, DebugHooks, Seam, TreeModel } from "../src/seam";

export class FakeBackend implements Backend {
  calls: [string, Record<string, unknown> | undefined][] = [];
  handlers = new Map<string, (params: any) => void>();

  constructor(private readonly answers: Record<string, unknown | Error>) {}

  async command<T>(name: string, params?: Record<string, unknown>): Promise<T> {
    this.calls.push([name, params]);
    const answer = this.answers[name];
    if (answer instanceof Error) throw answer;
    if (answer === undefined) throw new Error(`no answer for ${name}`);
    return answer as T;
  }

  onNotification(method: string, handler: (params: any) => void): void {
    this.handlers.set(method, handler);
  }

  notify(method: string, params: unknown): void {
    this.handlers.get(method)?.(params);
  }
}

export class FakeSeam implements Seam {
  commands = new Map<string, (...args: unknown[]) => unknown>();
  trees = new Map<string, TreeModel<any>>();
  debug = new Map<string, DebugHooks>();
  errors: string[] = [];
  infos: string[] = [];
  status: string | undefined;
  started: DebugConfiguration[] = [];
  configurations: DebugConfiguration[] = [];
  program: string | undefined;
  settings: Record<string, unknown> = {};

  registerCommand(name: string, run: (...args: unknown[]) => unknown): void {
    this.commands.set(name, run);
  }
  registerTree<Node>(viewId: string, model: TreeModel<Node>): void {
    this.trees.set(viewId, model);
  }
  registerDebug(type: string, hooks: DebugHooks): void {
    this.debug.set(type, hooks);
  }
  showError(message: string): void {
    this.errors.push(message);
  }
  settingErrors: [string, string][] = [];
  showSettingError(message: string, setting: string): void {
    this.settingErrors.push([message, setting]);
  }
  warnings: string[] = [];
  showWarning(message: string): void {
    this.warnings.push(message);
  }
  showInfo(message: string): void {
    this.infos.push(message);
  }
  setStatus(text: string | undefined): void {
    this.status = text;
  }
  output: string[] = [];
  appendOutput(line: string): void {
    this.output.push(line);
  }
  async startDebugging(configuration: DebugConfiguration): Promise<boolean> {
    this.started.push(configuration);
    return true;
  }
  launchConfigurations(): DebugConfiguration[] {
    return this.configurations;
  }
  async pickProgram(): Promise<string | undefined> {
    return this.program;
  }
  setting<T>(name: string, fallback: T): T {
    return (this.settings[name] as T | undefined) ?? fallback;
  }
  folders: string[] = [];
  workspaceFolders(): string[] {
    return this.folders;
  }
  python: string | undefined;
  async selectedPython(): Promise<string | undefined> {
    return this.python;
  }
  extensionVersion(): string {
    return "0.1.0";
  }
}

export const BLOG = { kind: "deployment", name: "blog", namespace: "default", containers: ["blog"], ports: [8080] };
export const BLOG_POD = { kind: "pod", name: "blog-6f979c29f8-4nn7l", namespace: "default", containers: ["blog"], ports: [8080] };
export const LONE_POD = { kind: "pod", name: "debug-shell", namespace: "default", containers: ["sh"], ports: [] };

export function sandboxBackend(): FakeBackend {
  return new FakeBackend({
    "podside.listContexts": { contexts: ["podside-sandbox", "prod"], current: "podside-sandbox" },
    "podside.listNamespaces": ["default", "kube-system"],
    "podside.listTargets": [BLOG, BLOG_POD, LONE_POD],
  });
}
