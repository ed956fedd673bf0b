// Entry point: start the backend and register everything; the logic lives in the backend.
import type * as vscode from "vscode";
import { registerAll } from "./activate";
import { startBackend } from "./languageClient";
import { createVscodeSeam } from "./vscodeSeam";

let stopBackend: (() => Promise<void>) | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const seam = createVscodeSeam(context);
  const { backend, stop } = await startBackend(seam);
  stopBackend = stop;
  registerAll(seam, backend);
}

export async function deactivate(): Promise<void> {
  await stopBackend?.();
}
