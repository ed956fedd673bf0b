"""podside's agent: runs in the target pod's network namespace and serves podside clients."""

__version__ = "0.1.0"
