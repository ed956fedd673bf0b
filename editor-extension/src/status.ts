// The status bar item: the state of the most recent podside session.
import type { Seam } from "./seam";

export interface SessionState {
  sessionId: string;
  target: string;
  state: string;
  message: string;
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
  seam.setStatus(`${icon} podside: ${state.target} ${state.state}`, state.message || undefined);
  if (state.state === "failed") seam.showError(`podside: ${state.target}: ${state.message}`);
}
