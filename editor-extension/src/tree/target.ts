// A target as `podside targets -o json` and the backend's podside.listTargets give it.
export interface Target {
  kind: string;
  name: string;
  namespace: string;
  containers: string[];
  ports: number[];
}

/** The pods whose name says they belong to a workload (NAME-<hash>... as controllers name them). */
export function podsOf(workload: Target, pods: Target[]): Target[] {
  return pods.filter((pod) => pod.namespace === workload.namespace && pod.name.startsWith(`${workload.name}-`));
}
