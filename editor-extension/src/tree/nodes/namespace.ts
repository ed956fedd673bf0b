// A namespace of a context: expands to its workloads.
import type { TreeItemSpec } from "../../seam";

export interface NamespaceNode {
  kind: "namespace";
  context: string;
  namespace: string;
}

export function namespaceItem(node: NamespaceNode): TreeItemSpec {
  return { label: node.namespace, expandable: true, contextValue: "podside.namespace", icon: "symbol-namespace" };
}
