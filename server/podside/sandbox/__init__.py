"""The embedded sandbox cluster: a Kubernetes-API-compatible API server and one node that runs
pods as local processes in their own network namespaces (`podside sandbox up|down|status`)."""
