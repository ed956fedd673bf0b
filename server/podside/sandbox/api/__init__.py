"""The sandbox's Kubernetes API server: resources, object store, HTTP handlers."""
