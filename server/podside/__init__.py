"""podside: run a local process in the context of a Kubernetes pod (the developer's side)."""

__version__ = "0.1.0"
