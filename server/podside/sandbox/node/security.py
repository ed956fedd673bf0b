"""Who a container's process runs as: the pod's securityContext merged with the container's, as
the kubelet and containerd/runc apply them on a real node.

- The user and group: the container's `runAsUser`/`runAsGroup`, else the pod's, else the
  image's user (every image the sandbox knows runs as root). Without a group the user's entry in
  the image's /etc/passwd gives it (the sandbox's images share the host's files), else 0, as
  containerd does. Supplementary groups: the primary one, the user's groups in /etc/group, the
  pod's `supplementalGroups` and its `fsGroup` (volumes are not chowned to it here).
- `runAsNonRoot` (container, else pod) refuses a uid 0 with the kubelet's own messages: the
  container waits in CreateContainerConfigError.
- Capabilities: containerd's default set, `add` then `drop` (`ALL` in either first), all of
  them when `privileged`. They bound the process; a root process has them effective. A non-root
  process has none effective or permitted: runc sets them before exec and the kernel clears
  them at exec for a non-root user, since containerd puts nothing in the ambient set
  (kubernetes/kubernetes#56374). `allowPrivilegeEscalation: false` sets no_new_privs.

The process is started through util-linux `setpriv`, which sets exactly these before exec.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from typing import Any

# containerd's (and Docker's) capabilities for a container that adds and drops none.
DEFAULT_CAPABILITIES = frozenset(
    {
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    }
)
# Every capability by its number (linux/capability.h), as the API names them (no CAP_ prefix).
CAPABILITY_NUMBERS = {
    name: number
    for number, name in enumerate(
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        ]
    )
}
ALL_CAPABILITIES = frozenset(CAPABILITY_NUMBERS)
# The user every image the sandbox runs declares (python, busybox, the agent's and the demos').
IMAGE_USER = 0


class SecurityContextRefused(Exception):
    """The kubelet will not start the container as its securityContext asks: the message is
    the CreateContainerConfigError's."""


@dataclass(frozen=True)
class ProcessCredentials:
    """What a container's process runs with."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    # The bounding set: the kernel makes it a root process's effective set at exec, and
    # clears the effective set of any other user's.
    bounding: frozenset[str]
    no_new_privs: bool

    def setpriv_argv(self) -> list[str]:
        """The `setpriv` prefix that makes the command run with exactly these."""
        bounding = ",".join(["-all", *(f"+{name.lower()}" for name in sorted(self.bounding))])
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            f"--groups={','.join(map(str, self.groups))}",
            f"--bounding-set={bounding}",
            # containerd leaves the inheritable set empty since 1.6.2 (CVE-2022-24769).
            "--inh-caps=-all",
            *(["--no-new-privs"] if self.no_new_privs else []),
            "--",
        ]


def effective_security_context(
    pod_spec: dict[str, Any], container: dict[str, Any]
) -> dict[str, Any]:
    """The container's securityContext over the pod's, for the fields both may set (what the
    kubelet's DetermineEffectiveSecurityContext does)."""
    pod_context = pod_spec.get("securityContext") or {}
    merged = {
        key: pod_context[key]
        for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seLinuxOptions", "seccompProfile")
        if pod_context.get(key) is not None
    }
    merged.update(
        {
            key: value
            for key, value in (container.get("securityContext") or {}).items()
            if value is not None
        }
    )
    return merged


def capability_set(context: dict[str, Any]) -> frozenset[str]:
    """The capabilities a container gets: containerd's defaults with `add` and `drop` applied
    (`ALL` in either first, so that `drop: [ALL], add: [X]` is X alone), unknown names left
    out as runc leaves them; all of them when privileged."""
    if context.get("privileged"):
        return ALL_CAPABILITIES
    capabilities = context.get("capabilities") or {}
    add = {_name(c) for c in capabilities.get("add") or []}
    drop = {_name(c) for c in capabilities.get("drop") or []}
    chosen = set(ALL_CAPABILITIES if "ALL" in add else DEFAULT_CAPABILITIES)
    if "ALL" in drop:
        chosen.clear()
    chosen |= add - {"ALL"}
    chosen -= drop
    return frozenset(chosen & ALL_CAPABILITIES)


def _name(capability: str) -> str:
    name = capability.upper()
    return name[4:] if name.startswith("CAP_") else name


def capability_mask(names: frozenset[str]) -> int:
    """The bit mask /proc/PID/status shows for these capabilities."""
    return sum(1 << CAPABILITY_NUMBERS[name] for name in names)


def pod_description(pod: dict[str, Any]) -> str:
    """How the kubelet names a pod in its messages: `name_namespace(uid)`."""
    metadata = pod["metadata"]
    return f"{metadata['name']}_{metadata['namespace']}({metadata['uid']})"


def credentials(pod: dict[str, Any], container: dict[str, Any]) -> ProcessCredentials:
    """The credentials of `container`'s process in `pod`, or SecurityContextRefused."""
    spec = pod["spec"]
    context = effective_security_context(spec, container)
    explicit_uid = context.get("runAsUser")
    uid = int(explicit_uid) if explicit_uid is not None else IMAGE_USER
    if context.get("runAsNonRoot") and uid == 0:
        where = f'(pod: "{pod_description(pod)}", container: {container["name"]})'
        if explicit_uid is not None:
            raise SecurityContextRefused(f"container's runAsUser breaks non-root policy {where}")
        raise SecurityContextRefused(
            f"container has runAsNonRoot and image will run as root {where}"
        )
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    run_as_group = context.get("runAsGroup")
    gid = int(run_as_group) if run_as_group is not None else (entry.pw_gid if entry else 0)
    groups = [gid]
    if entry is not None:
        groups += [g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem]
    pod_context = spec.get("securityContext") or {}
    groups += [int(g) for g in pod_context.get("supplementalGroups") or []]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    bounding = capability_set(context)
    return ProcessCredentials(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys(groups)),
        bounding=bounding,
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
    )
