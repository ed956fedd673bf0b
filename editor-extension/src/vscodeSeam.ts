// The seam implemented with the real VS Code API: the only module besides extension.ts that
// touches `vscode`, kept to translation so that the logic stays testable without an editor.
import { spawn } from "node:child_process";
import * as vscode from "vscode";
import type { AdapterSpec, DebugConfiguration, DebugEnding, DebugHooks, Seam, TreeModel } from "./seam";

export function createVscodeSeam(context: vscode.ExtensionContext): Seam {
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  context.subscriptions.push(status);
  const output = vscode.window.createOutputChannel("podside: program output");
  context.subscriptions.push(output);
  const keep = (disposable: vscode.Disposable): void => {
    context.subscriptions.push(disposable);
  };

  return {
    registerCommand(name, run) {
      keep(vscode.commands.registerCommand(name, run));
    },
    registerTree<Node>(viewId: string, model: TreeModel<Node>) {
      const changed = new vscode.EventEmitter<void>();
      model.onChanged = () => changed.fire();
      keep(changed);
      keep(
        vscode.window.createTreeView(viewId, {
          showCollapseAll: viewId === "podside.targets",
          treeDataProvider: {
            onDidChangeTreeData: changed.event,
            getChildren: (node?: Node) => model.children(node),
            getTreeItem: (node: Node) => treeItem(model, node),
          },
        }),
      );
    },
    registerDebug(type: string, hooks: DebugHooks) {
      keep(
        vscode.debug.registerDebugConfigurationProvider(type, {
          resolveDebugConfiguration: (folder, configuration) =>
            hooks.resolve(folder?.uri.fsPath, configuration as DebugConfiguration),
          resolveDebugConfigurationWithSubstitutedVariables: (folder, configuration) =>
            hooks.resolveSubstituted(folder?.uri.fsPath, configuration as DebugConfiguration),
        }),
      );
      keep(
        vscode.debug.registerDebugAdapterDescriptorFactory(type, {
          createDebugAdapterDescriptor: async (session) => {
            try {
              return await adapterFor(hooks.adapter(session.configuration as DebugConfiguration), (text) => output.append(text));
            } catch (error) {
              hooks.adapterFailed(session.configuration as DebugConfiguration, String(error));
              throw error;
            }
          },
        }),
      );
      // How each debug session ends, from the requests VS Code sends its adapter.
      const endings = new Map<string, DebugEnding>();
      keep(
        vscode.debug.registerDebugAdapterTrackerFactory("*", {
          createDebugAdapterTracker: (session) => {
            const configuration = session.configuration as DebugConfiguration;
            if (configuration.podsideSessionId === undefined) return undefined;
            return {
              onWillReceiveMessage: (message: DapMessage) => {
                const ending = endingOf(message, configuration.request);
                if (ending !== undefined && !endings.has(session.id)) endings.set(session.id, ending);
              },
              onDidSendMessage: (message: DapMessage) => {
                if (message.type === "response" && message.command === "configurationDone" && message.success === true) {
                  hooks.configured(configuration);
                }
              },
            };
          },
        }),
      );
      keep(
        vscode.debug.onDidTerminateDebugSession((session) => {
          // No request seen: the debuggee ended on its own, which for a launch is the end.
          const ending = endings.get(session.id) ?? (session.configuration.request === "attach" ? "detach" : "terminate");
          endings.delete(session.id);
          hooks.terminated(session.configuration as DebugConfiguration, ending);
        }),
      );
    },
    showError(message) {
      void vscode.window.showErrorMessage(message);
    },
    showSettingError(message, setting) {
      void vscode.window.showErrorMessage(message, OPEN_SETTING).then((choice) => {
        if (choice === OPEN_SETTING) void vscode.commands.executeCommand("workbench.action.openSettings", setting);
      });
    },
    showWarning(message) {
      void vscode.window.showWarningMessage(message);
    },
    showInfo(message) {
      void vscode.window.showInformationMessage(message);
    },
    setStatus(text, tooltip) {
      if (text === undefined) {
        status.hide();
        return;
      }
      status.text = text;
      status.tooltip = tooltip;
      status.show();
    },
    appendOutput(line) {
      output.appendLine(line);
    },
    startDebugging(configuration) {
      return Promise.resolve(vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], configuration));
    },
    launchConfigurations() {
      const folder = vscode.workspace.workspaceFolders?.[0];
      return vscode.workspace.getConfiguration("launch", folder).get<DebugConfiguration[]>("configurations", []);
    },
    async pickProgram(title) {
      const picked = await vscode.window.showOpenDialog({ title, canSelectMany: false, openLabel: "Run with cluster context" });
      return picked?.[0]?.fsPath;
    },
    setting<T>(name: string, fallback: T): T {
      return vscode.workspace.getConfiguration("podside").get<T>(name, fallback);
    },
    workspaceFolders() {
      return (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
    },
    selectedPython,
    extensionVersion() {
      return (context.extension.packageJSON as { version: string }).version;
    },
  };
}

const OPEN_SETTING = "Open Setting";

/** The part of the Python extension's API (ms-python.python) that names its selected interpreter. */
interface PythonExtensionApi {
  environments: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
    resolveEnvironment(environment: { path: string }): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
}

async function selectedPython(): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension<PythonExtensionApi>("ms-python.python");
  if (extension === undefined) return undefined;
  try {
    const api = extension.isActive ? extension.exports : await extension.activate();
    const active = api.environments.getActiveEnvironmentPath(vscode.workspace.workspaceFolders?.[0]?.uri);
    return (await api.environments.resolveEnvironment(active))?.executable.uri?.fsPath;
  } catch {
    // An older Python extension without this API: as if it were not installed.
    return undefined;
  }
}

interface DapMessage {
  type?: string;
  command?: string;
  success?: boolean;
  arguments?: { terminateDebuggee?: boolean };
}

/** Whether a request from VS Code to the adapter ends the program or only the debugging. */
function endingOf(message: DapMessage, request: string): DebugEnding | undefined {
  if (message.type !== "request") return undefined;
  if (message.command === "terminate") return "terminate";
  if (message.command !== "disconnect") return undefined;
  const terminate = message.arguments?.terminateDebuggee;
  // Without the flag VS Code means its default: a launch stops, an attach disconnects.
  return terminate === true || (terminate === undefined && request === "launch") ? "terminate" : "detach";
}

function treeItem<Node>(model: TreeModel<Node>, node: Node): vscode.TreeItem {
  const spec = model.item(node);
  const item = new vscode.TreeItem(
    spec.label,
    spec.expandable ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None,
  );
  item.description = spec.description;
  item.tooltip = spec.tooltip;
  item.contextValue = spec.contextValue;
  if (spec.icon !== undefined) item.iconPath = new vscode.ThemeIcon(spec.icon);
  return item;
}

/** The adapter of a resolved configuration; `log` gets the output of one we start ourselves. */
async function adapterFor(spec: AdapterSpec | undefined, log: (text: string) => void): Promise<vscode.DebugAdapterDescriptor> {
  if (spec === undefined) throw new Error("podside: this debug session was not resolved by podside; start it again");
  if (spec.server !== undefined) return new vscode.DebugAdapterServer(spec.server.port, spec.server.host);
  const [command, ...args] = spec.command ?? [];
  if (command === undefined) throw new Error("podside: the launch template has an empty adapter command");
  const env = spec.env === undefined ? undefined : { ...process.env, ...spec.env };
  if (spec.listeningPattern === undefined) return new vscode.DebugAdapterExecutable(command, args, env === undefined ? undefined : { env: env as Record<string, string> });
  const pattern = new RegExp(spec.listeningPattern);
  // The adapter is a server (delve): start it, then connect where it says it listens.
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env });
    let seen = "";
    const read = (chunk: Buffer): void => {
      log(chunk.toString());
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match?.[1] !== undefined && match[2] !== undefined) resolve(new vscode.DebugAdapterServer(Number(match[2]), match[1]));
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("error", (error) => reject(new Error(`podside: cannot start the debug adapter ${command}: ${error.message}`)));
    child.on("exit", (code) => reject(new Error(`podside: the debug adapter exited (${code}): ${seen.trim().split("\n").pop() ?? ""}`)));
  });
}
