// The traffic view: the requests the pod received during podside sessions, newest first. The
// kubelet's health checks of the pod (every few seconds) are left out: they would bury the rest.
import type { TreeItemSpec, TreeModel } from "../seam";

/** One `podside/traffic` notification. */
export interface TrafficEvent {
  sessionId: string;
  id: string;
  time: string;
  method: string;
  path: string;
  status: number | null;
  duration: number | null;
  mode: string;
  /** The kubelet's probe of the pod. */
  probe?: boolean;
}

// Enough to scroll back through a debugging session; older requests are dropped first.
const KEPT = 500;

export class TrafficModel implements TreeModel<TrafficEvent> {
  onChanged?: () => void;
  private readonly events: TrafficEvent[] = [];

  add(event: TrafficEvent): void {
    if (event.probe === true) return;
    this.events.unshift(event);
    this.events.length = Math.min(this.events.length, KEPT);
    this.onChanged?.();
  }

  async children(node: TrafficEvent | undefined): Promise<TrafficEvent[]> {
    return node === undefined ? [...this.events] : [];
  }

  item(event: TrafficEvent): TreeItemSpec {
    const status = event.status ?? "…";
    const took = event.duration === null ? "" : ` ${Math.round(event.duration * 1000)} ms`;
    return {
      label: `${event.method} ${event.path}`,
      description: `${status}${took} · ${event.mode}`,
      tooltip: `${event.time} (session ${event.sessionId}, request ${event.id})`,
      expandable: false,
      contextValue: "podside.request",
      icon: event.mode === "steal" ? "arrow-swap" : "mirror",
    };
  }
}
