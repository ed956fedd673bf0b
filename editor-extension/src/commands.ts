// What the extension's commands do; activation only registers them.
import { runtimeFor } from "./debug/launch";
import { oneLine, type Backend, type DebugConfiguration, type Seam } from "./seam";
import type { TargetNode } from "./tree/node";
import type { SessionState } from "./status";
import type { TrafficEvent } from "./traffic/trafficModel";

/** Start "Run with cluster context" on a target of the tree. */
export async function runWithClusterContext(seam: Seam, node: TargetNode | undefined): Promise<void> {
  if (node === undefined || (node.kind !== "workload" && node.kind !== "pod")) {
    seam.showInfo("podside: choose a workload or pod in the podside Targets view");
    return;
  }
  const target = `${node.target.kind}/${node.target.name}`;
  const place = { context: node.context, namespace: node.target.namespace };
  // The workspace's own configuration for this target wins: it knows the program and its args.
  const configured = seam
    .launchConfigurations()
    .find((configuration) => configuration.type === "podside" && configuration.target === target);
  if (configured !== undefined) {
    await seam.startDebugging({ ...configured, ...place });
    return;
  }
  const program = await seam.pickProgram(`Program to run with the context of ${target}`);
  if (program === undefined) return;
  const runtime = runtimeFor(program);
  const configuration: DebugConfiguration = {
    type: "podside",
    request: "launch",
    name: `Run with cluster context: ${target}`,
    runtime,
    target,
    ...place,
    ...(runtime === "command" ? { command: program } : { program }),
  };
  await seam.startDebugging(configuration);
}

export async function replayRequest(seam: Seam, backend: Backend, event: TrafficEvent | undefined, withDebugger: boolean): Promise<void> {
  if (event === undefined) return;
  try {
    const answer = await backend.command<{ status: number | null }>("podside.replayRequest", {
      sessionId: event.sessionId,
      requestId: event.id,
      withDebugger,
    });
    seam.showInfo(`podside: replayed ${event.method} ${event.path}: ${answer.status ?? "no status"}`);
  } catch (error) {
    seam.showError(oneLine(error));
  }
}

/** Stop one session (from its state), or every live one (from the command palette). */
export async function stopSessions(seam: Seam, backend: Backend, state: SessionState | undefined): Promise<void> {
  try {
    let sessionIds: string[];
    if (state?.sessionId !== undefined) {
      sessionIds = [state.sessionId];
    } else {
      const sessions = await backend.command<SessionState[]>("podside.listSessions");
      sessionIds = sessions.filter((session) => session.state === "starting" || session.state === "running").map((session) => session.sessionId);
    }
    if (sessionIds.length === 0) {
      seam.showInfo("podside: no session is running");
      return;
    }
    for (const sessionId of sessionIds) await backend.command("podside.stopSession", { sessionId });
  } catch (error) {
    seam.showError(oneLine(error));
  }
}
