// Activation: register every view, command and debug hook, and route backend notifications.
import { replayRequest, runWithClusterContext } from "./commands";
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
  seam.registerDebug("podside", new PodsideDebug(seam, backend));

  seam.registerCommand("podside.refreshTargets", () => targets.refresh());
  seam.registerCommand("podside.runWithClusterContext", (node) => runWithClusterContext(seam, node as TargetNode | undefined));
  seam.registerCommand("podside.replayRequest", (event) => replayRequest(seam, backend, event as TrafficEvent | undefined, false));
  seam.registerCommand("podside.replayRequestWithDebugger", (event) =>
    replayRequest(seam, backend, event as TrafficEvent | undefined, true),
  );
  seam.registerCommand("podside.stopSession", (state) => {
    const sessionId = (state as SessionState | undefined)?.sessionId;
    if (sessionId !== undefined) return backend.command("podside.stopSession", { sessionId });
    return undefined;
  });

  backend.onNotification("podside/sessionState", (state: SessionState) => showSessionState(seam, state));
  backend.onNotification("podside/traffic", (event: TrafficEvent) => traffic.add(event));
  backend.onNotification("podside/progress", (progress: { message: string }) => seam.setStatus(`$(sync~spin) podside: ${progress.message}`));
}
