// Every node of the targets tree: a discriminated union on `kind`, one file per kind.
import type { TreeItemSpec } from "../seam";
import { contextItem, type ContextNode } from "./nodes/context";
import { messageItem, type MessageNode } from "./nodes/message";
import { namespaceItem, type NamespaceNode } from "./nodes/namespace";
import { podItem, type PodNode } from "./nodes/pod";
import { workloadItem, type WorkloadNode } from "./nodes/workload";

export type { ContextNode, MessageNode, NamespaceNode, PodNode, WorkloadNode };
export type TargetNode = ContextNode | NamespaceNode | WorkloadNode | PodNode | MessageNode;

export function itemOf(node: TargetNode): TreeItemSpec {
  switch (node.kind) {
    case "context":
      return contextItem(node);
    case "namespace":
      return namespaceItem(node);
    case "workload":
      return workloadItem(node);
    case "pod":
      return podItem(node);
    case "message":
      return messageItem(node);
  }
}
