// The backend: `podside lsp` started over stdio with vscode-languageclient.
import { ExecuteCommandRequest, LanguageClient, ResponseError, type ServerOptions } from "vscode-languageclient/node";
import type { Backend, Seam } from "./seam";

export async function startBackend(seam: Seam): Promise<{ backend: Backend; stop: () => Promise<void> }> {
  const kubeconfig = seam.setting("kubeconfig", "");
  const env = { ...process.env, ...(kubeconfig ? { KUBECONFIG: kubeconfig } : {}) };
  const server: ServerOptions = { command: seam.setting("path", "podside"), args: ["lsp"], options: { env } };
  const client = new LanguageClient("podside", "podside", server, { documentSelector: [] });
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
    seam.showError(`podside: cannot start the backend "${seam.setting("path", "podside")} lsp": ${String(error)}`);
  }
  return { backend, stop: () => client.stop() };
}
