"""The Kubernetes side of podside: kubeconfig and context, targets, the agent in the pod."""
