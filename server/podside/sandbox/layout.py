"""Where the sandbox keeps its state and which names and addresses it owns.

Everything the sandbox creates on the host is named here, so `down` can remove exactly that and
never touch namespaces, interfaces or routes that belong to someone else. Names that are
machine-wide (network namespaces, the owner file in /run) carry the sandbox's id, a hash of
its state dir, so sandboxes with different state dirs run side by side; names inside the
node's own namespace (bridge, veths, nftables) cannot clash and stay fixed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/podside/sandbox")
STATE_DIR_ENV = "PODSIDE_SANDBOX_DIR"
# One owner file per running sandbox (`<id>.json`): what is shared by all of them on the host
# is set up by the first and removed by the last.
OWNERS_DIR = Path("/run/podside-sandbox")

CONTEXT_NAME = "podside-sandbox"
NODE_NAME = "podside-sandbox"
# Inside the node namespace, so the same in every sandbox.
BRIDGE = "podside0"
POD_VETH_PREFIX = "psv"

# The whole 198.18.0.0/15 benchmarking range is ours; the host gets an `unreachable` route for
# it so that, as on a laptop next to a real cluster, nothing on the host reaches pods or services.
SANDBOX_RANGE = ipaddress.ip_network("198.18.0.0/15")
POD_CIDR = ipaddress.ip_network("198.18.0.0/17")
SERVICE_CIDR = ipaddress.ip_network("198.18.128.0/20")
GATEWAY_IP = ipaddress.ip_address("198.18.0.1")
KUBERNETES_SERVICE_IP = ipaddress.ip_address("198.18.128.1")
CLUSTER_DNS_IP = ipaddress.ip_address("198.18.128.10")
CLUSTER_DOMAIN = "cluster.local"

DEFAULT_API_PORT = 6443
SERVER_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0+podside",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class StateDir:
    """The files of one sandbox under its state directory."""

    root: Path

    @classmethod
    def from_env(cls) -> StateDir:
        return cls(Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).absolute())

    @property
    def sandbox_id(self) -> str:
        """8 hex digits of the resolved state dir's path: stable across runs, so `down` finds
        the names of a sandbox whose daemon died, and different for every state dir."""
        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]

    @property
    def node_netns(self) -> str:
        return f"podside-node-{self.sandbox_id}"

    @property
    def pod_netns_prefix(self) -> str:
        return f"ps-{self.sandbox_id}-"

    def pod_netns(self, uid: str) -> str:
        """The pod's network namespace: `ps-<sandbox id>-<8 hex of the pod uid>`."""
        return self.pod_netns_prefix + uid.replace("-", "")[:8]

    @property
    def owner_file(self) -> Path:
        """Says this sandbox runs (state dir and daemon pid) while its daemon lives."""
        return OWNERS_DIR / f"{self.sandbox_id}.json"

    @property
    def state_file(self) -> Path:
        """JSON written by the daemon once it serves: pid, port, url, names it created."""
        return self.root / "state.json"

    @property
    def users_file(self) -> Path:
        """Bearer tokens and their rules; re-read by the API server when it changes."""
        return self.root / "users.json"

    @property
    def kubeconfig_entries_file(self) -> Path:
        """Which kubeconfig file got which entries, so `down` removes exactly those."""
        return self.root / "kubeconfig-entries.json"

    @property
    def admin_kubeconfig(self) -> Path:
        """A standalone kubeconfig with only the sandbox's admin context."""
        return self.root / "kubeconfig"

    @property
    def log_file(self) -> Path:
        return self.root / "daemon.log"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def pause_binary(self) -> Path:
        """A symlink named `pause` to sleep(1): pod holder processes show up as `pause`."""
        return self.root / "bin" / "pause"

    @property
    def network_file(self) -> Path:
        """Names of the namespaces, routes and directories the node created (for cleanup)."""
        return self.root / "network.json"

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid


def pod_veth_name(uid: str) -> str:
    return POD_VETH_PREFIX + uid.replace("-", "")[:8]
