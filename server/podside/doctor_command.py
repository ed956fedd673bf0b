"""`podside doctor`: can podside work here and against this context? One line per check.

Everything is tried for real, not inferred: the layer's kernel features in a forked child, the
API with a request, RBAC with SelfSubjectAccessReviews, the agent image by starting an agent
pod, the port-forward by a session to that agent, and the agent's NET_RAW and nftables by the
agent itself (`agent.capabilities`). Exit 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podside.errors import PodsideError

MIN_KERNEL = (5, 19)
README_RBAC = "README.md, section Kubernetes, lists the Role podside needs"
# (verb, API group, resource, subresource, what podside needs it for)
NEEDED: tuple[tuple[str, str, str, str], ...] = (
    *((verb, "", "pods", "") for verb in ("get", "list", "watch", "create")),
    *((verb, "", "services", "") for verb in ("get", "list")),
    *(
        (verb, "apps", resource, "")
        for resource in ("deployments", "statefulsets", "daemonsets", "replicasets")
        for verb in ("get", "list")
    ),
    ("get", "batch", "jobs", ""),
    ("patch", "", "pods", "ephemeralcontainers"),
    ("get", "", "pods", "portforward"),
    ("create", "", "pods", "portforward"),
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok       {self.name}: {self.detail}"
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"PROBLEM  {self.name}: {self.detail}{fix}"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="check this machine and a cluster context for what podside needs",
        description="Check the kernel features of the layer, the kubeconfig context, the API, "
        "RBAC, ephemeral containers, the agent image, port-forward and the agent's "
        "capabilities. One line per check; exit 0 only when all pass.",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument(
        "--agent-image", help="a prebuilt agent image to try (default: none, see next)"
    )
    parser.add_argument(
        "--agent-python-image",
        metavar="IMAGE",
        help="the python image the agent runs in without --agent-image (default: python:3.12-slim)",
    )
    parser.add_argument(
        "--agent-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the trial agent to run (default: 60)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    passed = True

    def report(check: Check) -> None:
        nonlocal passed
        passed = passed and check.ok
        print(check.line(), flush=True)

    # The fork comes first, while podside has no threads (the Kubernetes client starts some).
    for check in kernel_checks():
        report(check)
    cluster_checks(args, report)
    return 0 if passed else 1


# --- this machine ------------------------------------------------------------------------------


def kernel_checks() -> list[Check]:
    release = platform.release()
    numbers = tuple(int(part) for part in release.split("-")[0].split(".")[:2] if part.isdigit())
    version_ok = numbers >= MIN_KERNEL
    checks = [
        Check(
            "kernel",
            version_ok,
            f"Linux {release} on {platform.machine()}",
            f"podside's layer needs Linux >= {'.'.join(map(str, MIN_KERNEL))}",
        )
    ]
    seccomp_result, pidfd_result = _try_layer_in_child()
    checks.append(
        Check(
            "seccomp user notification",
            seccomp_result is None,
            seccomp_result or "a filter with a listener was installed in a child",
            "a kernel with CONFIG_SECCOMP_FILTER (>= 5.0) and seccomp allowed for podside "
            "(not inside a container whose seccomp profile blocks it)",
        )
    )
    checks.append(
        Check(
            "pidfd_getfd",
            pidfd_result is None,
            pidfd_result or "took the child's listener descriptor",
            "Linux >= 5.6, and ptrace allowed on your own processes (kernel.yama.ptrace_scope <= 1)",
        )
    )
    return checks


def _try_layer_in_child() -> tuple[str | None, str | None]:
    """Install a seccomp filter with a listener in a child and take the listener from it."""
    try:
        from podside.layer import seccomp
    except ImportError as error:
        return str(error), "not tried"
    prepared = seccomp.PreparedFilter(seccomp.FilterRules(always=frozenset({"connect"})))
    report_read, report_write = os.pipe()
    hold_read, hold_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only syscalls until _exit
        os.close(report_read)
        os.close(hold_write)
        try:
            fd = prepared.install()
            os.write(report_write, f"ok {fd}".encode())
        except OSError as error:
            os.write(report_write, f"error {error.strerror or error}".encode())
        os.read(hold_read, 1)
        os._exit(0)
    os.close(report_write)
    os.close(hold_read)
    try:
        answer = os.read(report_read, 200).decode()
        if not answer.startswith("ok "):
            return answer.removeprefix("error ") or "the child died", "not tried"
        try:
            pidfd = seccomp.pidfd_open(pid)
            try:
                os.close(seccomp.pidfd_getfd(pidfd, int(answer.split()[1])))
            finally:
                os.close(pidfd)
        except OSError as error:
            return None, error.strerror or str(error)
        return None, None
    finally:
        os.close(hold_write)
        os.close(report_read)
        os.waitpid(pid, 0)


# --- the cluster -------------------------------------------------------------------------------


def cluster_checks(args: argparse.Namespace, report: Callable[[Check], None]) -> None:
    from kubernetes import client

    from podside.kube.config import REQUEST_TIMEOUT, api_errors, load_context

    try:
        ctx = load_context(args.context, args.namespace, args.kubeconfig)
    except PodsideError as error:
        report(Check("kubeconfig", False, error.message, "podside doctor --context NAME"))
        return
    report(Check("kubeconfig", True, f"context {ctx.name}, namespace {ctx.namespace}"))
    try:
        with api_errors(ctx, "read the API server's version"):
            version = client.VersionApi(ctx.api_client).get_code(_request_timeout=REQUEST_TIMEOUT)
    except PodsideError as error:
        report(Check("API", False, error.message, "check the cluster is up and the VPN/network"))
        return
    report(
        Check("API", True, f"{ctx.configuration.host} answers (Kubernetes {version.git_version})")
    )

    report(_rbac(ctx))
    report(_ephemeral_containers(ctx))
    for check in _agent_checks(ctx, args):
        report(check)


def _rbac(ctx: Any) -> Check:
    from kubernetes import client

    from podside.kube.config import REQUEST_TIMEOUT, api_errors

    api = client.AuthorizationV1Api(ctx.api_client)
    missing = []
    try:
        for verb, group, resource, subresource in NEEDED:
            body: Any = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": ctx.namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "subresource": subresource,
                    }
                },
            }
            with api_errors(ctx, "ask the API what this user may do (SelfSubjectAccessReview)"):
                review = api.create_self_subject_access_review(
                    body, _request_timeout=REQUEST_TIMEOUT
                )
            if review.status is None or not review.status.allowed:
                name = f"{resource}/{subresource}" if subresource else resource
                missing.append(f"{verb} {name}" + (f" ({group})" if group else ""))
    except PodsideError as error:
        return Check("RBAC", False, error.message, README_RBAC)
    if missing:
        return Check(
            "RBAC",
            False,
            f"in namespace {ctx.namespace} this user may not: {', '.join(missing)}",
            f"ask your cluster admin for them; {README_RBAC}",
        )
    return Check("RBAC", True, f"all {len(NEEDED)} verbs podside uses in namespace {ctx.namespace}")


def _ephemeral_containers(ctx: Any) -> Check:
    from kubernetes import client

    from podside.kube.config import REQUEST_TIMEOUT, api_errors

    try:
        with api_errors(ctx, "list the core API's resources"):
            resources = client.CoreV1Api(ctx.api_client).get_api_resources(
                _request_timeout=REQUEST_TIMEOUT
            )
    except PodsideError as error:
        return Check("ephemeral containers", False, error.message)
    names = {resource.name for resource in resources.resources}
    if "pods/ephemeralcontainers" not in names:
        return Check(
            "ephemeral containers",
            False,
            "the API server has no pods/ephemeralcontainers subresource",
            "Kubernetes >= 1.25 (ephemeral containers are GA there), or use --targetless",
        )
    return Check("ephemeral containers", True, "the API serves pods/ephemeralcontainers")


def _agent_checks(ctx: Any, args: argparse.Namespace) -> list[Check]:
    """Start a short-lived agent pod: the image, the port-forward and the agent's rights."""
    from kubernetes import client

    from podside.kube import agent
    from podside.kube.config import REQUEST_TIMEOUT

    image = agent.AgentImage.of(args.agent_image, args.agent_python_image)
    fix = (
        "--agent-image IMAGE your nodes can pull"
        if image.prebuilt
        else "--agent-python-image IMAGE (Python 3.10+) your nodes can pull, or --agent-image"
    )
    try:
        endpoint = agent.ensure_targetless_agent(
            ctx, image=image, progress=lambda _: None, timeout=args.agent_timeout
        )
    except PodsideError as error:
        return [
            Check("agent image", False, error.message, fix),
            Check("port-forward", False, "not tried: no agent ran"),
        ]
    checks = [Check("agent image", True, f"{image.name} runs (pod {endpoint.pod})")]
    try:
        checks += asyncio.run(_session_checks(ctx, endpoint))
    finally:
        with contextlib.suppress(Exception):
            client.CoreV1Api(ctx.api_client).delete_namespaced_pod(
                endpoint.pod,
                endpoint.namespace,
                grace_period_seconds=0,
                _request_timeout=REQUEST_TIMEOUT,
            )
    return checks


async def _session_checks(ctx: Any, endpoint: Any) -> list[Check]:
    from podside.kube.connect import _connect
    from podside_protocol.capabilities import CAPABILITIES

    try:
        session = await _connect(ctx, endpoint)
    except PodsideError as error:
        return [
            Check(
                "port-forward",
                False,
                error.message,
                "the API server must allow WebSocket port-forward (pods/portforward)",
            )
        ]
    try:
        answer = await session.request(CAPABILITIES, {})
    except Exception as error:
        return [
            Check("port-forward", True, f"reached the agent in {endpoint.pod}"),
            Check("agent capabilities", False, f"the agent did not answer: {error}"),
        ]
    finally:
        await session.close()
    raw = answer.get("net_raw", {})
    nft = answer.get("nftables", {})
    return [
        Check("port-forward", True, f"reached the agent in pod {endpoint.pod}"),
        Check(
            "agent NET_RAW (mirror)",
            bool(raw.get("ok")),
            str(raw.get("detail")),
            "allow the NET_RAW capability for ephemeral containers (Pod Security admission "
            "'baseline' allows it; a PodSecurityPolicy or Kyverno rule may not)",
        ),
        Check(
            "agent nftables (steal)",
            bool(nft.get("ok")),
            str(nft.get("detail")),
            "allow the NET_ADMIN capability for the agent, and an agent image with libnftables",
        ),
    ]
