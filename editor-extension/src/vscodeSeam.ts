// The seam implemented with the real VS Code API: the only module besides extension.ts that
// touches `vscode`, kept to translation so that the logic stays testable without an editor.
import { spawn } from "node:child_process";
import * as vscode from "vscode";
import type { AdapterSpec, DebugConfiguration, DebugHooks, Seam, TreeModel } from "./seam";

export function createVscodeSeam(context: vscode.ExtensionContext): Seam {
  const status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 50);
  context.subscriptions.push(status);
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
        }),
      );
      keep(
        vscode.debug.registerDebugAdapterDescriptorFactory(type, {
          createDebugAdapterDescriptor: (session) => adapterFor(hooks.adapter(session.configuration as DebugConfiguration)),
        }),
      );
      keep(vscode.debug.onDidTerminateDebugSession((session) => hooks.terminated(session.configuration as DebugConfiguration)));
    },
    showError(message) {
      void vscode.window.showErrorMessage(message);
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
  };
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

async function adapterFor(spec: AdapterSpec | undefined): Promise<vscode.DebugAdapterDescriptor> {
  if (spec === undefined) throw new Error("podside: this debug session was not resolved by podside; start it again");
  const [command, ...args] = spec.command;
  if (command === undefined) throw new Error("podside: the launch template has an empty adapter command");
  if (spec.listeningPattern === undefined) return new vscode.DebugAdapterExecutable(command, args);
  const pattern = new RegExp(spec.listeningPattern);
  // The adapter is a server (delve): start it, then connect where it says it listens.
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    const read = (chunk: Buffer): void => {
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match?.[1] !== undefined && match[2] !== undefined) resolve(new vscode.DebugAdapterServer(Number(match[2]), match[1]));
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`podside: the debug adapter exited (${code}): ${seen.trim().split("\n").pop() ?? ""}`)));
  });
}
