// A pod: a target, the leaf of the tree.
import type { TreeItemSpec } from "../../seam";
import type { Target } from "../target";

export interface PodNode {
  kind: "pod";
  context: string;
  target: Target;
}

export function podItem(node: PodNode): TreeItemSpec {
  return {
    label: `pod/${node.target.name}`,
    description: node.target.ports.length ? `:${node.target.ports.join(", :")}` : undefined,
    tooltip: `containers: ${node.target.containers.join(", ")}`,
    expandable: false,
    contextValue: "podside.target",
    icon: "vm",
  };
}
