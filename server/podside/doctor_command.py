"""`podside doctor`: can podside work here and against this context? One line per check.

Everything is tried for real, not inferred: the layer's kernel features in a forked child, the
API with a request, RBAC with SelfSubjectAccessReviews, the agent image by starting an agent
pod, the port-forward by a session to that agent, and the agent's NET_RAW and nftables by the
agent itself (`agent.capabilities`). With `--target` the agent is the one sessions use in that
pod (started or reused), so the pod's own securityContext is what is tried; its user is
reported, and the agent also reads the target's environment. Exit 0 only when every check
passes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podside.errors import PodsideError
from podside.kube.agent_settings import add_pull_arguments

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
    add_pull_arguments(parser, "a Secret the node pulls the agent's image with (repeatable)")
    parser.add_argument(
        "-t",
        "--target",
        metavar="KIND/NAME",
        help="check this pod's own context: its user, and the agent sessions use there "
        "(started, or reused; an ephemeral container stays in the pod)",
    )
    parser.add_argument("--container", help="the target container (multi-container pods)")
    parser.add_argument(
        "--agent-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the trial agent to run (default: 60)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from podside import exec_values

    for secret in args.image_pull_secret:
        try:
            exec_values.secret_name(secret)
        except exec_values.InvalidValue as error:
            raise PodsideError(f"--image-pull-secret {secret!r}: {error}", exit_code=2) from None
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
    checks = _target_checks(ctx, args) if args.target else _agent_checks(ctx, args)
    for check in checks:
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


def fix_for(cause: str, namespace: str) -> str:
    """What to do about an agent that did not start, by what refused it."""
    from podside.kube import admission
    from podside.kube.targets import AGENT_POD_LABEL

    if cause == admission.POD_SECURITY:
        return (
            f"ask your cluster admin to label namespace {namespace} "
            "pod-security.kubernetes.io/enforce=privileged (an agent in a target pod needs "
            "NET_ADMIN for steal and NET_RAW for mirror); podside exec --targetless needs "
            "neither"
        )
    if cause == admission.WEBHOOK:
        return (
            "ask your cluster admin for an exception for podside's agent (its pods carry the "
            f"label {'='.join(AGENT_POD_LABEL)}) in the policy behind that webhook"
        )
    if cause == admission.QUOTA:
        return (
            "give the agent pod resources within the quota (podside exec --targetless-requests "
            "and --targetless-limits), or ask for more"
        )
    if cause == admission.RBAC:
        return f"ask your cluster admin for it; {README_RBAC}"
    if cause == admission.IMAGE:
        return (
            "--agent-image IMAGE (or --agent-python-image IMAGE, Python 3.10+) your nodes can "
            "pull; from a private registry, "
            "--image-pull-secret NAME for --targetless (an agent in a target pod pulls with "
            "that pod's own imagePullSecrets)"
        )
    return f"see the agent pod's events: kubectl describe pod -n {namespace}"


def _agent_settings(args: argparse.Namespace) -> Any:
    """The pull policy and secrets doctor's agents are given, as a session's would be."""
    from podside.kube.agent_settings import AgentSettings

    return AgentSettings(
        image_pull_policy=args.agent_image_pull_policy,
        image_pull_secrets=tuple(args.image_pull_secret),
    )


def _agent_checks(ctx: Any, args: argparse.Namespace) -> list[Check]:
    """Start a short-lived agent pod with the capabilities an agent in a target pod asks for:
    the image, the port-forward and the agent's rights. Refused by Pod Security, say so and
    try the image and port-forward with a pod that asks for none (a targetless agent's)."""
    from podside.kube import admission, agent

    image = agent.AgentImage.of(args.agent_image, args.agent_python_image)
    settings = _agent_settings(args)

    def start(capabilities: bool) -> Any:
        return agent.ensure_targetless_agent(
            ctx,
            image=image,
            progress=lambda _: None,
            timeout=args.agent_timeout,
            settings=settings,
            capabilities=capabilities,
        )

    checks = []
    capabilities_refused = False
    try:
        endpoint = start(capabilities=True)
    except PodsideError as error:
        if error.cause != admission.POD_SECURITY:
            return [
                Check("agent image", False, error.message, fix_for(error.cause, ctx.namespace)),
                Check("port-forward", False, "not tried: no agent ran"),
            ]
        checks.append(
            Check("Pod Security", False, error.message, fix_for(error.cause, ctx.namespace))
        )
        capabilities_refused = True
        try:
            endpoint = start(capabilities=False)
        except PodsideError as error:
            return [
                *checks,
                Check("agent image", False, error.message, fix_for(error.cause, ctx.namespace)),
                Check("port-forward", False, "not tried: no agent ran"),
            ]
    checks.append(Check("agent image", True, f"{image.name} runs (pod {endpoint.pod})"))
    try:
        checks += asyncio.run(_session_checks(ctx, endpoint, capabilities_refused))
    finally:
        left = _remove_trial_pod(ctx, endpoint)
    if left is not None:
        checks.append(left)
    return checks


def _remove_trial_pod(ctx: Any, endpoint: Any) -> Check | None:
    """Delete the trial pod; a user who may not (podside itself never deletes pods) is told
    that it stays and ends by itself."""
    from kubernetes import client

    from podside.kube import agent
    from podside.kube.config import REQUEST_TIMEOUT, api_errors

    try:
        with api_errors(ctx, f"delete pods in namespace {endpoint.namespace}"):
            client.CoreV1Api(ctx.api_client).delete_namespaced_pod(
                endpoint.pod,
                endpoint.namespace,
                grace_period_seconds=0,
                _request_timeout=REQUEST_TIMEOUT,
            )
    except PodsideError as error:
        return Check(
            "trial pod",
            True,
            f"pod {endpoint.namespace}/{endpoint.pod} stays ({error.message}); its agent exits "
            f"{agent.IDLE_EXIT_SECONDS} s after doctor leaves and the pod completes",
        )
    return None


def target_user(pod: dict[str, Any], container: str) -> str:
    """Who the target container runs as, and what that means for the agent, from the pod's
    manifest: the container's runAsUser over the pod's, as the kubelet merges them."""
    spec = pod.get("spec") or {}
    pod_context = spec.get("securityContext") or {}
    container_spec: dict[str, Any] = next(
        (c for c in spec.get("containers") or [] if c.get("name") == container), {}
    )
    container_context = container_spec.get("securityContext") or {}
    uid, source = container_context.get("runAsUser"), "its securityContext"
    if uid is None:
        uid, source = pod_context.get("runAsUser"), "the pod's securityContext"
    if uid is None:
        who = "runs as its image's user (no runAsUser)"
    elif uid == 0:
        who = f"runs as root ({source})"
    else:
        who = f"runs as uid {uid} ({source}), holding no capabilities"
    non_root = container_context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if non_root:
        who += " with runAsNonRoot"
    agent = f"{agent_spec_summary()} for itself"
    if uid is None or uid == 0:
        return f"container {container} {who}; the agent {agent}"
    # An ephemeral container would inherit that user: say why the agent still works.
    return f"container {container} {who}; an ephemeral container inherits it, so the agent {agent}"


def agent_spec_summary() -> str:
    from podside.kube import agent

    return "sets runAsUser 0, runAsNonRoot false and adds " + ", ".join(agent.TARGET_CAPABILITIES)


def _target_checks(ctx: Any, args: argparse.Namespace) -> list[Check]:
    """The target pod's own context: who it runs as, and the agent sessions use there, with
    what it could do in that pod."""
    from kubernetes import client

    from podside.kube import agent, targets
    from podside.kube.config import REQUEST_TIMEOUT, api_errors

    try:
        target = targets.resolve_target(ctx, args.target, args.container)
        with api_errors(ctx, f"get pods in namespace {target.namespace}"):
            pod = client.CoreV1Api(ctx.api_client).read_namespaced_pod(
                target.pod, target.namespace, _request_timeout=REQUEST_TIMEOUT
            )
    except PodsideError as error:
        return [Check("target", False, error.message, "podside targets lists what there is")]
    manifest = ctx.api_client.sanitize_for_serialization(pod)
    where = f"pod {target.namespace}/{target.pod}"
    checks = [Check("target", True, f"{where}: {target_user(manifest, target.container)}")]
    image = agent.AgentImage.of(args.agent_image, args.agent_python_image)
    try:
        endpoint = agent.ensure_agent(
            ctx,
            target,
            image=image,
            progress=lambda _: None,
            timeout=args.agent_timeout,
            settings=_agent_settings(args),
        )
    except PodsideError as error:
        return [
            *checks,
            Check(
                "agent in the target",
                False,
                error.message,
                f"the agent's container {agent_spec_summary()}: the cluster must allow that "
                "in this pod's namespace, and its nodes must pull the image (--agent-image)",
            ),
            Check("port-forward", False, "not tried: no agent ran"),
        ]
    how = "reused" if endpoint.reused else "started (it stays, for the next sessions)"
    checks.append(Check("agent in the target", True, f"{endpoint.container} in {where}, {how}"))
    return checks + asyncio.run(_session_checks(ctx, endpoint, target_container=target.container))


async def _session_checks(
    ctx: Any, endpoint: Any, capabilities_refused: bool = False, target_container: str = ""
) -> list[Check]:
    from podside.kube.connect import _connect
    from podside_protocol import environment
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
    reads_target: list[Check] = []
    try:
        answer = await session.request(CAPABILITIES, {})
        if target_container:
            reads_target.append(await _reads_target(session, environment.GET, target_container))
    except Exception as error:
        return [
            Check("port-forward", True, f"reached the agent in {endpoint.pod}"),
            Check("agent capabilities", False, f"the agent did not answer: {error}"),
        ]
    finally:
        await session.close()
    if capabilities_refused:
        not_tried = "not tried: Pod Security refused the capabilities (see above)"
        return [
            Check("port-forward", True, f"reached the agent in pod {endpoint.pod}"),
            Check("agent NET_RAW (mirror)", False, not_tried),
            Check("agent nftables (steal)", False, not_tried),
        ]
    raw = answer.get("net_raw", {})
    nft = answer.get("nftables", {})
    runs_as = _runs_as(answer.get("identity"))
    return [
        Check("port-forward", True, f"reached the agent in pod {endpoint.pod}"),
        Check(
            "agent NET_RAW (mirror)",
            bool(raw.get("ok")),
            str(raw.get("detail")) + ("" if raw.get("ok") else runs_as),
            "the agent's container asks for root and NET_RAW: allow them (Pod Security "
            "admission allows NET_RAW only at the privileged level; a Kyverno or Gatekeeper "
            "rule may drop it)",
        ),
        Check(
            "agent nftables (steal)",
            bool(nft.get("ok")),
            str(nft.get("detail")) + ("" if nft.get("ok") else runs_as),
            "the agent's container asks for root and NET_ADMIN: allow them; the node kernel "
            "needs nf_tables with the fib and tproxy expressions (modules nft_fib_inet, "
            "nft_tproxy)",
        ),
        *reads_target,
    ]


def _runs_as(identity: Any) -> str:
    """` (the agent runs as uid 1000, no effective capabilities)`, from its answer."""
    if not isinstance(identity, dict) or not isinstance(identity.get("uid"), int):
        return ""
    effective = identity.get("effective")
    held = (
        "no effective capabilities"
        if effective == 0
        else f"effective capabilities {effective:#x}"
        if isinstance(effective, int)
        else "capabilities unknown"
    )
    return f" (the agent runs as uid {identity['uid']}, {held})"


async def _reads_target(session: Any, method: str, container: str) -> Check:
    """Whether the agent reads the target's /proc/PID/environ (its root is read the same way)."""
    from podside_agent.peer import RequestFailed

    name = "agent reads the target"
    try:
        variables = await session.request(method, {})
    except RequestFailed as error:
        return Check(
            name,
            False,
            f"the environment of container {container}: {error}",
            "a process of another uid is readable only with SYS_PTRACE: allow it for the agent",
        )
    return Check(
        name, True, f"the environment of container {container} ({len(variables)} variables)"
    )
