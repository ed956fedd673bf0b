// A line in place of children: why there is nothing to show (an error, an empty namespace).
import type { TreeItemSpec } from "../../seam";

export interface MessageNode {
  kind: "message";
  text: string;
  error: boolean;
}

export function messageItem(node: MessageNode): TreeItemSpec {
  return { label: node.text, expandable: false, icon: node.error ? "error" : "info" };
}
