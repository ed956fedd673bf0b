// The backend: `podside lsp`, found by backendCommand.ts, started over stdio with vscode-languageclient.
import {
  ExecuteCommandRequest,
  LanguageClient,
  ResponseError,
  type DynamicFeature,
  type ServerOptions,
  type StaticFeature,
} from "vscode-languageclient/node";
import { lookUpBackend, mismatch, unavailableBackend } from "./backendCommand";
import type { Backend, Seam } from "./seam";

/**
 * A client that does not turn the backend's commands into VS Code commands: the backend's
 * `podside.replayRequest` and `podside.stopSession` share their names with the extension's
 * own commands (which call them), and VS Code refuses a second registration of a name.
 */
class BackendClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if ("registrationType" in feature && feature.registrationType.method === ExecuteCommandRequest.method) return;
    super.registerFeature(feature);
  }
}

export async function startBackend(seam: Seam): Promise<{ backend: Backend; stop: () => Promise<void> }> {
  const kubeconfig = seam.setting("kubeconfig", "");
  const env = { ...process.env, ...(kubeconfig ? { KUBECONFIG: kubeconfig } : {}) };
  const lookup = await lookUpBackend(seam, env);
  if ("problem" in lookup) return { backend: unavailableBackend(lookup.problem), stop: async () => undefined };
  const { command, args } = lookup.found;
  const commandLine = [command, ...args, "lsp"].join(" ");
  const server: ServerOptions = { command, args: [...args, "lsp"], options: { env } };
  const client = new BackendClient("podside", "podside", server, { documentSelector: [] });
  const backend: Backend = {
    async command<T>(name: string, params?: Record<string, unknown>): Promise<T> {
      try {
        return (await client.sendRequest(ExecuteCommandRequest.type, { command: name, arguments: params ? [params] : [] })) as T;
      } catch (error) {
        // JSON-RPC errors carry the backend's one-line message; drop the wrapper.
        throw new Error(error instanceof ResponseError ? error.message : String(error));
      }
    },
    onNotification(method, handler) {
      client.onNotification(method, handler);
    },
  };
  try {
    await client.start();
  } catch (error) {
    seam.showError(`podside: cannot start the backend "${commandLine}": ${String(error)}`);
    return { backend, stop: () => client.stop() };
  }
  const warning = client.initializeResult && mismatch(seam.extensionVersion(), client.initializeResult, `"${commandLine}"`);
  if (warning) seam.showWarning(warning);
  return { backend, stop: () => client.stop() };
}
