// The targets view: contexts -> namespaces -> workloads -> pods, each level asked of the backend.
import { oneLine, type Backend, type TreeItemSpec, type TreeModel } from "../seam";
import { itemOf, type TargetNode } from "./node";
import { podsOf, type Target } from "./target";

export class TargetsModel implements TreeModel<TargetNode> {
  onChanged?: () => void;

  constructor(private readonly backend: Backend) {}

  refresh(): void {
    this.onChanged?.();
  }

  item(node: TargetNode): TreeItemSpec {
    return itemOf(node);
  }

  async children(node: TargetNode | undefined): Promise<TargetNode[]> {
    try {
      return await this.load(node);
    } catch (error) {
      // The tree shows the backend's one line where the children would be.
      return [{ kind: "message", text: oneLine(error), error: true }];
    }
  }

  private async load(node: TargetNode | undefined): Promise<TargetNode[]> {
    if (node === undefined) {
      const answer = await this.backend.command<{ contexts: string[]; current: string | null }>("podside.listContexts");
      if (answer.contexts.length === 0) return [{ kind: "message", text: "no contexts in the kubeconfig", error: false }];
      return answer.contexts.map((context) => ({ kind: "context", context, current: context === answer.current }));
    }
    switch (node.kind) {
      case "context": {
        const namespaces = await this.backend.command<string[]>("podside.listNamespaces", { context: node.context });
        return namespaces.map((namespace) => ({ kind: "namespace", context: node.context, namespace }));
      }
      case "namespace": {
        const targets = await this.backend.command<Target[]>("podside.listTargets", {
          context: node.context,
          namespace: node.namespace,
        });
        const pods = targets.filter((target) => target.kind === "pod");
        // Everything but pods (deployments, services, jobs...) is a workload-like target.
        const workloads = targets.filter((target) => target.kind !== "pod");
        const owned = new Set(workloads.flatMap((workload) => podsOf(workload, pods)));
        const nodes: TargetNode[] = [
          ...workloads.map((target) => ({ kind: "workload" as const, context: node.context, target, pods: podsOf(target, pods) })),
          ...pods.filter((pod) => !owned.has(pod)).map((target) => ({ kind: "pod" as const, context: node.context, target })),
        ];
        return nodes.length ? nodes : [{ kind: "message", text: "no workloads or pods", error: false }];
      }
      case "workload":
        return node.pods.map((target) => ({ kind: "pod", context: node.context, target }));
      case "pod":
      case "message":
        return [];
    }
  }
}
