// A workload (deployment, statefulset, job, service...): a target itself; expands to its pods.
import type { TreeItemSpec } from "../../seam";
import type { Target } from "../target";

export interface WorkloadNode {
  kind: "workload";
  context: string;
  target: Target;
  pods: Target[];
}

export function workloadItem(node: WorkloadNode): TreeItemSpec {
  return {
    label: `${node.target.kind}/${node.target.name}`,
    description: node.target.ports.length ? `:${node.target.ports.join(", :")}` : undefined,
    tooltip: `containers: ${node.target.containers.join(", ")}`,
    expandable: node.pods.length > 0,
    contextValue: "podside.target",
    icon: "layers",
  };
}
