// A kubeconfig context: expands to its namespaces.
import type { TreeItemSpec } from "../../seam";

export interface ContextNode {
  kind: "context";
  context: string;
  current: boolean;
}

export function contextItem(node: ContextNode): TreeItemSpec {
  return {
    label: node.context,
    description: node.current ? "current" : undefined,
    expandable: true,
    contextValue: "podside.context",
    icon: node.current ? "pass-filled" : "server-environment",
  };
}
