"""The agent in the cluster: an ephemeral container in the target pod (or, targetless, a pod of
its own), started, joined or reused, and waited for until it runs.

Ephemeral containers can never be removed from a pod, so a running podside agent in the pod is
reused rather than another one added each session; the agent serves several clients and exits
by itself `--idle-exit` seconds after its last one left. Its spec carries only the verifier of
a token (anyone who may `get pods` reads the spec); the token stays in the starter's cache
(`agent_tokens`). A session with no token for the agent there joins it: a short-lived
`--enroll` container hands the agent the verifier of a fresh token over the pod-local socket,
so several developers share one agent, and the steal coordination that lives in it.
Sessions racing to add the first agent add one: the others join it (`ensure_agent`).

With no `--agent-image`, the agent's container is a plain python image running the bootstrap,
and this podside delivers its own agent code to it (`agent_code`). Agents are told apart by
what podside sets itself, never by an image's name: the `podside-agent-` name and the protocol
version in `PODSIDE_AGENT_PROTOCOL`; only an agent of this podside's version is reused.
"""

from __future__ import annotations

import copy
import math
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from podside.errors import PodsideError
from podside.kube import admission, rest
from podside.kube.agent_code import AgentCode, agent_code, bootstrap_source
from podside.kube.agent_settings import AgentSettings
from podside.kube.agent_tokens import TokenCache
from podside.kube.config import REQUEST_TIMEOUT, KubeContext, api_errors, status_message
from podside.kube.targets import AGENT_POD_LABEL, Target
from podside_protocol.frames import PROTOCOL_ENV, PROTOCOL_VERSION
from podside_protocol.tokens import VERIFIER_ENV, new_token, verifier_of

# The official image, which every node that runs Python workloads can already pull; the
# agent needs Python 3.10 or newer (`podside_agent.bootstrap.MINIMUM_PYTHON`).
DEFAULT_PYTHON_IMAGE = "python:3.12-slim"
AGENT_NAME_PREFIX = "podside-agent-"
# Older podside put the token itself in the spec: such an agent is never reused.
PLAIN_TOKEN_ENV = "PODSIDE_AGENT_TOKEN"
ENROLL_FLAG = "--enroll"
IDLE_EXIT_SECONDS = 300
PORT_RANGE = (20000, 60000)
TARGETLESS_CONTAINER = "agent"
# How often the pod may change between reading it and adding an agent before podside gives up
# (another session's agent, the kubelet's status updates): more means it is never quiet.
MAX_POD_CHANGES = 8
# Steal's redirects need NET_ADMIN, the sniffer NET_RAW.
NETWORK_CAPABILITIES = ["NET_ADMIN", "NET_RAW"]
# An agent with a target also reads its /proc/PID/environ and /proc/PID/root, which
# ptrace_may_access allows only to the target's own user, to a process holding at least its
# capabilities, or with SYS_PTRACE; the pod's user and capabilities are not known before it
# runs (an image's USER), so an agent in a pod always adds it.
TARGET_CAPABILITIES = [*NETWORK_CAPABILITIES, "SYS_PTRACE"]
# The targetless agent only connects out and relays DNS: it needs no capability and no root,
# so its pod passes Pod Security "restricted" (nobody's uid: the image may not name a user).
TARGETLESS_USER = 65534
TARGETLESS_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": TARGETLESS_USER,
    "runAsGroup": TARGETLESS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
TARGETLESS_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# A service mesh that injects its sidecar (and its init container, which needs NET_ADMIN)
# would keep the pod from completing when the agent exits, and from passing Pod Security.
TARGETLESS_ANNOTATIONS = {"sidecar.istio.io/inject": "false", "linkerd.io/inject": "disabled"}
IMAGE_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
# Waiting reasons after which the kubelet will not get the container running by itself soon:
# better to say so now than at the end of the timeout.
FAILED_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


@dataclass
class AgentEndpoint:
    """Where a running agent listens (inside `pod`, reached by port-forward) and this
    session's token for it."""

    namespace: str
    pod: str
    port: int
    token: str
    container: str
    reused: bool
    # The code the agent's bootstrap waits for, sent before the first session (new agents
    # of a plain python image only).
    code: AgentCode | None = None
    # The code a reused agent's bootstrap may still wait for: delivered if it does not answer.
    undelivered_code: AgentCode | None = None


@dataclass(frozen=True)
class AgentImage:
    """What an agent container runs: a prebuilt agent image (`--agent-image`, its entrypoint
    the agent), or a plain python image whose command is the bootstrap."""

    name: str
    prebuilt: bool

    @classmethod
    def of(cls, agent_image: str | None, python_image: str | None = None) -> AgentImage:
        if agent_image:
            return cls(agent_image, prebuilt=True)
        return cls(python_image or DEFAULT_PYTHON_IMAGE, prebuilt=False)

    def code(self) -> AgentCode | None:
        """The code a new agent container of this image waits for, if any."""
        return None if self.prebuilt else agent_code()


def _random_suffix() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _agent_container(
    name: str,
    image: AgentImage,
    args: list[str],
    token: str,
    settings: AgentSettings,
    *,
    target_container: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The one spec of an agent container (the agent, an enrollment, the targetless pod's): it
    shows only the token's verifier and the protocol version it must speak, and sets its own
    user and capabilities. With `target_container` it is an ephemeral container in that
    container's PID namespace, where the agent reads its target's /proc (and the agent checks
    an enrolling process's). A plain python image runs the bootstrap, which waits for the
    code this podside delivers."""
    container: dict[str, Any] = {
        "name": name,
        "image": image.name,
        "args": args,
        "env": [
            {"name": VERIFIER_ENV, "value": verifier_of(token)},
            {"name": PROTOCOL_ENV, "value": str(PROTOCOL_VERSION)},
        ],
        # Why it failed, in the status, as the agent (or its bootstrap) said it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # In full: an ephemeral container otherwise inherits the pod's runAsUser, runAsGroup
        # and runAsNonRoot, and a non-root user holds none of the capabilities it adds (they
        # are not ambient). Root also makes the enrollment check (the agent's uid and at least
        # its capabilities) refuse the pod's own non-root processes.
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "capabilities": {
                "add": TARGET_CAPABILITIES if target_container else NETWORK_CAPABILITIES
            },
        },
        **({"targetContainerName": target_container} if target_container else {}),
        **fields,
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    code = image.code()
    if code is not None:
        container["command"] = ["python", "-c", bootstrap_source()]
        if ENROLL_FLAG not in args:
            container["args"] = ["--code-sha256", code.sha256, "--code-size", str(code.size)]
            container["args"] += args
    return container


def targetless_pod(
    name: str,
    image: AgentImage,
    port: int,
    token: str,
    settings: AgentSettings,
    *,
    capabilities: bool,
) -> dict[str, Any]:
    """The targetless agent's pod: with no capability and not root unless `capabilities`
    (doctor's trial of what an agent in a target pod may do)."""
    container = _agent_container(TARGETLESS_CONTAINER, image, _agent_args(port), token, settings)
    resources = {
        key: dict(values)
        for key, values in (("requests", settings.requests), ("limits", settings.limits))
        if values
    }
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if not capabilities:
        container["securityContext"] = copy.deepcopy(TARGETLESS_CONTAINER_SECURITY)
        spec["securityContext"] = copy.deepcopy(TARGETLESS_POD_SECURITY)
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": secret} for secret in settings.image_pull_secrets]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in settings.tolerations]
    # podside's own label last: a user's label cannot take it away (doctor and `targets`
    # tell agent pods by it).
    labels = {**settings.labels, **dict([AGENT_POD_LABEL])}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {**TARGETLESS_ANNOTATIONS, **settings.annotations},
        },
        "spec": spec,
    }


def _agent_args(port: int) -> list[str]:
    return ["--port", str(port), "--idle-exit", str(IDLE_EXIT_SECONDS)]


@dataclass(frozen=True)
class PodAgent:
    """An agent container of a pod that podside started, running or on its way there."""

    container: str
    port: int
    running: bool
    # The code its bootstrap was started for (None: a prebuilt image).
    code_sha256: str | None = None


def _port_of(container: Any) -> int | None:
    """The port of an agent container started the way this podside starts one: named so,
    marked with this podside's protocol version, its spec holding a verifier and never a
    token (that would be an older podside's)."""
    args = list(container.args or [])
    env = {e.name: e.value for e in container.env or []}
    if not str(container.name).startswith(AGENT_NAME_PREFIX):
        return None
    if "--port" not in args or ENROLL_FLAG in args or VERIFIER_ENV not in env:
        return None
    if PLAIN_TOKEN_ENV in env or env.get(PROTOCOL_ENV) != str(PROTOCOL_VERSION):
        return None
    try:
        return int(args[args.index("--port") + 1])
    except (IndexError, ValueError):
        return None


def _code_sha256_of(container: Any) -> str | None:
    args = list(container.args or [])
    if "--code-sha256" not in args or args.index("--code-sha256") + 1 >= len(args):
        return None
    return str(args[args.index("--code-sha256") + 1])


def _container_state(statuses: list[Any] | None, name: str) -> Any:
    status = next((s for s in statuses or [] if s.name == name), None)
    return status.state if status else None


def pod_agents(pod: Any, target: Target) -> list[PodAgent]:
    """The agents in `pod` that speak this podside's protocol, attached to the same
    container, whatever their image, that run or are starting (no status yet, or waiting for
    no reason that keeps it from ever running), newest first. One that is starting was just
    added by a session that will use it: another session joins it rather than adding a
    second agent."""
    states = {status.name: status.state for status in pod.status.ephemeral_container_statuses or []}
    agents = []
    for container in pod.spec.ephemeral_containers or []:
        state = states.get(container.name)
        # Running, or on its way: no status yet, or waiting for a reason it gets over.
        if (
            _failure(state, container.name, _PULL_HINT_EPHEMERAL) is None
            and container.target_container_name == target.container
            and (port := _port_of(container)) is not None
        ):
            agents.append(
                PodAgent(
                    container.name,
                    port,
                    running=bool(state and state.running),
                    code_sha256=_code_sha256_of(container),
                )
            )
    # Ephemeral containers are only ever appended, so the last one is the newest.
    return agents[::-1]


def _failure(state: Any, what: str, pull_hint: str) -> PodsideError | None:
    """Why a container will not run (a failed waiting reason, or it ended), else None; an
    image the node cannot pull ends with `pull_hint`, what to do about it."""
    if state is None:
        return None
    if state.waiting and state.waiting.reason in FAILED_WAITING_REASONS:
        reason = state.waiting.reason
        message = f": {state.waiting.message}" if state.waiting.message else ""
        if reason in IMAGE_PULL_FAILURES:
            return PodsideError(
                f"{what} cannot start: {reason}{message}; {pull_hint}", cause=admission.IMAGE
            )
        return PodsideError(f"{what} cannot start: {reason}{message}")
    if state.terminated:
        ended = state.terminated
        detail = f": {ended.message.strip()}" if ended.message else ""
        return PodsideError(
            f"{what} exited (code {ended.exit_code}, {ended.reason or 'no reason'}){detail}"
        )
    return None


# What to do when the node cannot pull the agent's image.
_PULL_HINT_TARGETLESS = (
    "use --agent-python-image IMAGE (Python 3.10+) or --agent-image IMAGE your nodes can pull, "
    "with --image-pull-secret NAME if its registry needs credentials"
)
_PULL_HINT_EPHEMERAL = (
    "use --agent-python-image IMAGE (Python 3.10+) or --agent-image IMAGE your nodes can "
    "pull; an ephemeral container pulls with its pod's "
    "own imagePullSecrets (from the pod's spec or its service account), which the agent "
    "cannot add"
)


def why_agent_ended(ctx: KubeContext, endpoint: AgentEndpoint) -> str | None:
    """Why the agent's container is not running any more (its last line, with the
    termination message policy it gets), None if it still runs or cannot be read."""
    try:
        pod = rest.get(ctx, "pods", endpoint.namespace, endpoint.pod)
    except Exception:
        return None
    ephemeral = _container_state(pod.status.ephemeral_container_statuses, endpoint.container)
    state = ephemeral or _container_state(pod.status.container_statuses, endpoint.container)
    failure = _failure(
        state,
        f"the agent {endpoint.container} in pod {endpoint.namespace}/{endpoint.pod}",
        _PULL_HINT_EPHEMERAL if ephemeral is not None else _PULL_HINT_TARGETLESS,
    )
    return failure.message if failure is not None else None


def _waiting_detail(state: Any) -> str:
    if state is None or state.waiting is None:
        return "no container status yet"
    reason = state.waiting.reason or "waiting"
    return reason + (f": {state.waiting.message}" if state.waiting.message else "")


def _wait_for_pod(
    ctx: KubeContext,
    namespace: str,
    pod_name: str,
    timeout: float,
    check: Callable[[Any], bool],
    on_timeout: Callable[[Any], str],
) -> None:
    """Watch the pod until `check(pod)` is true (it raises on failure); on timeout raise with
    `on_timeout(last pod seen)`. A watch with no resource version starts with the pod as it is,
    so nothing between the caller's change and the watch is missed."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while (remaining := deadline - time.monotonic()) > 0:
        with api_errors(ctx, f"watch pods in namespace {namespace}"):
            for event in rest.watch(
                ctx,
                "pods",
                namespace,
                (REQUEST_TIMEOUT[0], remaining + REQUEST_TIMEOUT[0]),
                fieldSelector=f"metadata.name={pod_name}",
                timeoutSeconds=max(1, math.ceil(remaining)),
            ):
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise PodsideError(
                        f"watching pod {namespace}/{pod_name} failed: "
                        f"{status.get('message', status)}"
                    )
                if event["type"] == "DELETED":
                    raise PodsideError(f"pod {namespace}/{pod_name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    last = event["object"]
                    if check(last):
                        return
                if time.monotonic() >= deadline:
                    break
    raise PodsideError(on_timeout(last))


def ensure_agent(
    ctx: KubeContext,
    target: Target,
    *,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float = 60.0,
    tokens: TokenCache | None = None,
    settings: AgentSettings | None = None,
    deliver: Callable[[str, str, int, AgentCode], None] | None = None,
) -> AgentEndpoint:
    """A running agent in the target's pod and a token it accepts: the one already there for
    the same container and image (with the token this user holds for it, else joined with a
    fresh one), or a new ephemeral container (random port, fresh token) once it runs.
    `deliver(namespace, pod, port, code)` sends this podside's code to the bootstrap of an
    agent it joins.

    Sessions that find no agent at the same moment must not each add one: an agent is added
    only to the pod as it was read (the patch carries its resourceVersion, and the API server
    refuses it with 409 Conflict once the pod changed), and a refused session reads the pod
    again and joins the agent another session just added, waiting for it to run."""
    tokens = tokens or TokenCache()
    settings = settings or AgentSettings()
    where = f"pod {target.namespace}/{target.pod}"
    for _ in range(MAX_POD_CHANGES):
        pod = _read_pod(ctx, target)
        pod_uid = str(pod.metadata.uid)
        agents = pod_agents(pod, target)
        for agent in agents:
            token = tokens.get(pod_uid, agent.container)
            if token is not None:
                if not agent.running:
                    _wait_until_running(ctx, target, agent.container, timeout)
                progress(f"reusing the agent {agent.container} in {where}")
                # Its starter may have ended before it delivered the code: if it is this
                # podside's code, this session can deliver it, should the agent not answer.
                ours = agent_code()
                return AgentEndpoint(
                    target.namespace,
                    target.pod,
                    agent.port,
                    token,
                    agent.container,
                    reused=True,
                    undelivered_code=ours if agent.code_sha256 == ours.sha256 else None,
                )
        # Only a container to be added pulls an image: a reused agent needs no secret.
        _check_pull_secrets(pod, where, settings)
        if agents:
            newest = agents[0]
            if not newest.running:
                progress(f"waiting for the agent {newest.container} another session added")
                _wait_until_running(ctx, target, newest.container, timeout)
            # Its starter may have ended before it sent the code, and a bootstrap still
            # waiting for it has no agent to enroll with. The code is public (the bootstrap
            # checks its digest only), so a session without the token sends it too.
            ours = agent_code()
            if deliver is not None and newest.code_sha256 == ours.sha256:
                deliver(target.namespace, target.pod, newest.port, ours)
            endpoint = _join(ctx, target, newest, image, progress, timeout, settings)
            if endpoint is not None:
                tokens.put(pod_uid, endpoint.container, endpoint.token)
                return endpoint
            continue  # it ended meanwhile: look again, and start one if none is left
        try:
            return _start_agent(ctx, target, pod, image, progress, timeout, tokens, settings)
        except _PodChanged:
            progress(f"{where} changed while the agent was being added; looking again")
    raise PodsideError(
        f"{where} changed {MAX_POD_CHANGES} times while podside tried to add its agent; try again"
    )


def _read_pod(ctx: KubeContext, target: Target) -> Any:
    with api_errors(ctx, f"get pods in namespace {target.namespace}"):
        return rest.get(ctx, "pods", target.namespace, target.pod)


def _start_agent(
    ctx: KubeContext,
    target: Target,
    pod: Any,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float,
    tokens: TokenCache,
    settings: AgentSettings,
) -> AgentEndpoint:
    """Add a new agent to `pod` as it was read (_PodChanged if it changed since) and wait
    until it runs."""
    where = f"pod {target.namespace}/{target.pod}"
    name = f"{AGENT_NAME_PREFIX}{_random_suffix()}"
    port = secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0]) + PORT_RANGE[0]
    token = new_token()
    container = _agent_container(
        name, image, _agent_args(port), token, settings, target_container=target.container
    )
    progress(f"starting the agent in {where} (container {target.container}, image {image.name})")
    _add_ephemeral_container(ctx, target, container, pod.metadata.resource_version)
    # Kept from the moment the container exists: a session ended while it starts still
    # leaves this user able to reuse it.
    tokens.put(str(pod.metadata.uid), name, token)
    _wait_until_running(ctx, target, name, timeout)
    progress("agent running")
    return AgentEndpoint(
        target.namespace, target.pod, port, token, name, reused=False, code=image.code()
    )


def _wait_until_running(ctx: KubeContext, target: Target, name: str, timeout: float) -> None:
    """Wait for the agent container `name` to run; PodsideError saying why it will not."""
    where = f"pod {target.namespace}/{target.pod}"

    def running(pod: Any) -> bool:
        state = _container_state(pod.status.ephemeral_container_statuses, name)
        failure = _failure(state, f"the agent {name} in {where}", _PULL_HINT_EPHEMERAL)
        if failure is not None:
            raise failure
        return bool(state is not None and state.running)

    def on_timeout(pod: Any) -> str:
        state = _container_state(pod.status.ephemeral_container_statuses, name) if pod else None
        return (
            f"the agent {name} in {where} is not running after {timeout:g}s "
            f"({_waiting_detail(state)}); see `kubectl describe pod -n {target.namespace} "
            f"{target.pod}`"
        )

    _wait_for_pod(ctx, target.namespace, target.pod, timeout, running, on_timeout)


def _join(
    ctx: KubeContext,
    target: Target,
    agent: PodAgent,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float,
    settings: AgentSettings,
) -> AgentEndpoint | None:
    """Make `agent` accept a fresh token through an enrollment container; None if the agent
    ended meanwhile (it reached its idle exit), so that a new one is started instead."""
    where = f"pod {target.namespace}/{target.pod}"
    name = f"podside-enroll-{_random_suffix()}"
    token = new_token()
    container = _agent_container(
        name,
        image,
        [ENROLL_FLAG, "--port", str(agent.port)],
        token,
        settings,
        target_container=target.container,
    )
    progress(f"joining the agent {agent.container} in {where} (container {name})")
    try:
        _add_ephemeral_container(ctx, target, container)
    except PodsideError as error:
        raise PodsideError(
            f"the agent {agent.container} in {where} was started by another session, and "
            f"this machine holds no token for it; joining it: {error.message}",
            error.exit_code,
            cause=error.cause,
        ) from None
    outcome: list[bool] = []

    def finished(pod: Any) -> bool:
        statuses = pod.status.ephemeral_container_statuses
        state = _container_state(statuses, name)
        if state is not None and state.terminated and state.terminated.exit_code == 0:
            outcome.append(True)
            return True
        failure = _failure(
            state, f"joining the agent {agent.container} in {where}: {name}", _PULL_HINT_EPHEMERAL
        )
        if failure is None:
            return False
        agent_state = _container_state(statuses, agent.container)
        if agent_state is None or not agent_state.running:
            outcome.append(False)
            return True
        raise failure

    def on_timeout(pod: Any) -> str:
        state = _container_state(pod.status.ephemeral_container_statuses, name) if pod else None
        return (
            f"joining the agent {agent.container} in {where}: {name} has not finished after "
            f"{timeout:g}s ({_waiting_detail(state)}); see `kubectl describe pod -n "
            f"{target.namespace} {target.pod}`"
        )

    _wait_for_pod(ctx, target.namespace, target.pod, timeout, finished, on_timeout)
    if not outcome[0]:
        progress(f"the agent {agent.container} ended meanwhile")
        return None
    progress("joined the agent")
    return AgentEndpoint(
        target.namespace, target.pod, agent.port, token, agent.container, reused=True
    )


class _PodChanged(Exception):
    """The pod is not as it was read: the API server refused a write made on its
    resourceVersion (409 Conflict)."""


def _add_ephemeral_container(
    ctx: KubeContext, target: Target, container: dict[str, Any], resource_version: str | None = None
) -> None:
    """Add `container`; with `resource_version`, only to the pod as it was then (else
    _PodChanged)."""
    where = f"pod {target.namespace}/{target.pod}"
    body: dict[str, Any] = {"spec": {"ephemeralContainers": [container]}}
    if resource_version is not None:
        # A patch that names a resourceVersion is applied only to that version of the pod.
        body["metadata"] = {"resourceVersion": resource_version}
    with api_errors(
        ctx,
        f"add the agent to {where}",
        advice={admission.POD_SECURITY: admission.pod_security_advice_for_agent(target.namespace)},
    ):
        try:
            rest.request(
                ctx,
                "PATCH",
                rest.path_of("pods", target.namespace, target.pod, "ephemeralcontainers"),
                body=body,
                # Strategic merge adds to the list by name; a merge patch would replace the
                # list, which the API server refuses once the pod has ephemeral containers.
                content_type="application/strategic-merge-patch+json",
            )
        except ApiException as error:
            if error.status == 409 and resource_version is not None:
                raise _PodChanged from None
            if error.status == 404:
                raise PodsideError(
                    f"cannot add the agent to {where}: {status_message(error)} (the pod is gone, "
                    "or the cluster is older than Kubernetes 1.25 and has no ephemeral "
                    "containers; --targetless needs none)"
                ) from None
            raise


def _check_pull_secrets(pod: Any, where: str, settings: AgentSettings) -> None:
    """An ephemeral container pulls with the pod's imagePullSecrets, which the ephemeral
    containers update cannot change: a secret asked for that the pod lacks is never used."""
    held = {ref.name for ref in pod.spec.image_pull_secrets or []}
    missing = [secret for secret in settings.image_pull_secrets if secret not in held]
    if missing:
        raise PodsideError(
            f"{where} has no imagePullSecret {', '.join(missing)}: an ephemeral container pulls "
            f"with its pod's own ({', '.join(sorted(held)) or 'none'}), from the pod's spec or "
            "its service account; add it there or use an agent image the node can pull "
            "(--image-pull-secret is for --targetless)",
            exit_code=2,
        )


def ensure_targetless_agent(
    ctx: KubeContext,
    *,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float = 60.0,
    settings: AgentSettings | None = None,
    capabilities: bool = False,
) -> AgentEndpoint:
    """A pod of its own running the agent (in the context's namespace unless the settings
    name one), for outgoing traffic and DNS without a target; it exits (and the pod
    completes) once idle. It asks for no capability, so Pod Security "restricted" admits it;
    `capabilities` gives it the ephemeral agent's (doctor tries them)."""
    settings = settings or AgentSettings()
    namespace = settings.namespace or ctx.namespace
    name = f"{AGENT_NAME_PREFIX}{_random_suffix()}"
    port = secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0]) + PORT_RANGE[0]
    # Never reused, so the token stays in this process alone.
    token = new_token()
    # A plain manifest: the client serializes dicts as they are, as for the patch above.
    body: Any = targetless_pod(name, image, port, token, settings, capabilities=capabilities)
    where = f"pod {namespace}/{name}"
    progress(f"starting the agent in a new {where} (image {image.name})")
    quota_advice = (
        "give the agent pod resources within the quota (--targetless-requests, "
        "--targetless-limits), or ask for more"
    )
    pod_security_advice = (
        admission.pod_security_advice_for_agent(namespace)
        if capabilities
        else "the targetless agent asks for no capability and runs as a non-root user; ask "
        "your cluster admin what else the namespace's policy needs"
    )
    with api_errors(
        ctx,
        f"create the agent pod in namespace {namespace}",
        advice={admission.QUOTA: quota_advice, admission.POD_SECURITY: pod_security_advice},
    ):
        rest.request(ctx, "POST", rest.path_of("pods", namespace), body=body)

    def running(pod: Any) -> bool:
        state = _container_state(pod.status.container_statuses, TARGETLESS_CONTAINER)
        failure = _failure(state, f"the agent in {where}", _PULL_HINT_TARGETLESS)
        if failure is not None:
            raise failure
        if pod.status.phase in ("Failed", "Succeeded"):
            raise PodsideError(f"{where} ended ({pod.status.phase}) before its agent ran")
        return bool(pod.status.phase == "Running" and state is not None and state.running)

    def on_timeout(pod: Any) -> str:
        state = (
            _container_state(pod.status.container_statuses, TARGETLESS_CONTAINER) if pod else None
        )
        phase = pod.status.phase if pod else "unknown"
        return (
            f"the agent in {where} is not running after {timeout:g}s ({phase}, "
            f"{_waiting_detail(state)}); see `kubectl describe pod -n {namespace} {name}`"
        )

    _wait_for_pod(ctx, namespace, name, timeout, running, on_timeout)
    progress("agent running")
    return AgentEndpoint(
        namespace, name, port, token, TARGETLESS_CONTAINER, reused=False, code=image.code()
    )
