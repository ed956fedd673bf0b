// The status bar item: the state of the most recent podside session.
import type { Seam } from "./seam";

export interface SessionState {
  sessionId: string;
  target: string;
  state: string;
  message: string;
  /** The program runs with a debug server: a debugger comes and goes (holdUntilAttached). */
  attachable?: boolean;
  debuggerAttached?: boolean;
}

const ICONS: Record<string, string> = {
  starting: "$(sync~spin)",
  running: "$(plug)",
  stopping: "$(sync~spin)",
  stopped: "$(debug-disconnect)",
  failed: "$(error)",
};

export function showSessionState(seam: Seam, state: SessionState): void {
  const icon = ICONS[state.state] ?? "$(question)";
  let debuggerNote = "";
  if (state.attachable === true && state.state === "running") {
    debuggerNote = state.debuggerAttached === true ? ", debugger attached" : ", requests wait for a debugger";
  }
  seam.setStatus(`${icon} podside: ${state.target} ${state.state}${debuggerNote}`, state.message || undefined);
  if (state.state === "failed") seam.showError(`podside: ${state.target}: ${state.message}`);
}
