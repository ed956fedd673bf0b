// Activation: register every view, command and debug hook, and route backend notifications.
import { replayRequest, runWithClusterContext, stopSessions } from "./commands";
import { PodsideDebug } from "./debug/launch";
import type { Backend, Seam } from "./seam";
import { showSessionState, type SessionState } from "./status";
import type { TargetNode } from "./tree/node";
import { TargetsModel } from "./tree/targetsModel";
import { TrafficModel, type TrafficEvent } from "./traffic/trafficModel";

export function registerAll(seam: Seam, backend: Backend): void {
  const targets = new TargetsModel(backend);
  const traffic = new TrafficModel();
  seam.registerTree("podside.targets", targets);
  seam.registerTree("podside.traffic", traffic);
  const debug = new PodsideDebug(seam, backend);
  seam.registerDebug("podside", debug);

  seam.registerCommand("podside.refreshTargets", () => targets.refresh());
  seam.registerCommand("podside.runWithClusterContext", (node) => runWithClusterContext(seam, node as TargetNode | undefined));
  seam.registerCommand("podside.replayRequest", (event) => replayRequest(seam, backend, event as TrafficEvent | undefined, false));
  seam.registerCommand("podside.replayRequestWithDebugger", (event) =>
    replayRequest(seam, backend, event as TrafficEvent | undefined, true),
  );
  seam.registerCommand("podside.stopSession", (state) => stopSessions(seam, backend, state as SessionState | undefined));

  backend.onNotification("podside/sessionState", (state: SessionState) => {
    showSessionState(seam, state);
    if (state.state === "stopped" || state.state === "failed") debug.sessionEnded(state.sessionId);
  });
  backend.onNotification("podside/attachDebugger", (ask: { sessionId: string; reason: string }) => {
    void debug.attach(ask.sessionId, ask.reason);
  });
  backend.onNotification("podside/output", (output: { line: string }) => seam.appendOutput(output.line));
  backend.onNotification("podside/traffic", (event: TrafficEvent) => traffic.add(event));
  backend.onNotification("podside/progress", (progress: { message: string }) => seam.setStatus(`$(sync~spin) podside: ${progress.message}`));
}
