"""The agent in the cluster: an ephemeral container in the target pod (or, targetless, a pod of
its own), started, joined or reused, and waited for until it runs.

Ephemeral containers can never be removed from a pod, so a running podside agent in the pod is
reused rather than another one added each session; the agent serves several clients and exits
by itself `--idle-exit` seconds after its last one left. Its spec carries only the verifier of
a token (anyone who may `get pods` reads the spec); the token stays in the starter's cache
(`agent_tokens`). A session with no token for the agent there joins it: a short-lived
`--enroll` container hands the agent the verifier of a fresh token over the pod-local socket,
so several developers share one agent, and the steal coordination that lives in it.

With no `--agent-image`, the agent's container is a plain python image running the bootstrap,
and this podside delivers its own agent code to it (`agent_code`). Agents are told apart by
what podside sets itself, never by an image's name: the `podside-agent-` name and the protocol
version in `PODSIDE_AGENT_PROTOCOL`; only an agent of this podside's version is reused.
"""

from __future__ import annotations

import math
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from podside.errors import PodsideError
from podside.kube.agent_code import AgentCode, agent_code, bootstrap_source
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
CAPABILITIES = ["NET_ADMIN", "NET_RAW"]  # steal redirects need NET_ADMIN, the sniffer NET_RAW
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


def _agent_container(name: str, image: AgentImage, args: list[str], token: str) -> dict[str, Any]:
    """An agent container spec (the agent, or an enrollment) that shows only the token's
    verifier and the protocol version it must speak; shared by the ephemeral and the
    targetless form."""
    container: dict[str, Any] = {
        "name": name,
        "image": image.name,
        "args": args,
        "env": [
            {"name": VERIFIER_ENV, "value": verifier_of(token)},
            {"name": PROTOCOL_ENV, "value": str(PROTOCOL_VERSION)},
        ],
        "securityContext": {"capabilities": {"add": CAPABILITIES}},
        # Why it failed, in the status, as the agent (or its bootstrap) said it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    code = image.code()
    if code is not None:
        container["command"] = ["python", "-c", bootstrap_source()]
        if ENROLL_FLAG not in args:
            container["args"] = ["--code-sha256", code.sha256, "--code-size", str(code.size)]
            container["args"] += args
    return container


def _agent_args(port: int) -> list[str]:
    return ["--port", str(port), "--idle-exit", str(IDLE_EXIT_SECONDS)]


@dataclass(frozen=True)
class RunningAgent:
    """An agent container of a pod that podside started and that runs now."""

    container: str
    port: int
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


def running_agents(pod: Any, target: Target) -> list[RunningAgent]:
    """The running agents in `pod` that speak this podside's protocol, attached to the same
    container, newest first; whatever their image."""
    running = {
        status.name
        for status in pod.status.ephemeral_container_statuses or []
        if status.state and status.state.running
    }
    agents = []
    for container in pod.spec.ephemeral_containers or []:
        if (
            container.name in running
            and container.target_container_name == target.container
            and (port := _port_of(container)) is not None
        ):
            agents.append(RunningAgent(container.name, port, _code_sha256_of(container)))
    # Ephemeral containers are only ever appended, so the last one is the newest.
    return agents[::-1]


def _failure(state: Any, what: str) -> str | None:
    """Why a container will not run (a failed waiting reason, or it ended), else None."""
    if state is None:
        return None
    if state.waiting and state.waiting.reason in FAILED_WAITING_REASONS:
        message = f": {state.waiting.message}" if state.waiting.message else ""
        return f"{what} cannot start: {state.waiting.reason}{message}"
    if state.terminated:
        ended = state.terminated
        detail = f": {ended.message.strip()}" if ended.message else ""
        return f"{what} exited (code {ended.exit_code}, {ended.reason or 'no reason'}){detail}"
    return None


def why_agent_ended(ctx: KubeContext, endpoint: AgentEndpoint) -> str | None:
    """Why the agent's container is not running any more (its last line, with the
    termination message policy it gets), None if it still runs or cannot be read."""
    core = client.CoreV1Api(ctx.api_client)
    try:
        pod: Any = core.read_namespaced_pod(
            endpoint.pod, endpoint.namespace, _request_timeout=REQUEST_TIMEOUT
        )
    except Exception:
        return None
    statuses = list(pod.status.ephemeral_container_statuses or [])
    statuses += pod.status.container_statuses or []
    state = _container_state(statuses, endpoint.container)
    return _failure(
        state, f"the agent {endpoint.container} in pod {endpoint.namespace}/{endpoint.pod}"
    )


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
    core = client.CoreV1Api(ctx.api_client)
    deadline = time.monotonic() + timeout
    last: Any = None
    while (remaining := deadline - time.monotonic()) > 0:
        watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
        with api_errors(ctx, f"watch pods in namespace {namespace}"):
            for event in watcher.stream(
                core.list_namespaced_pod,
                namespace,
                field_selector=f"metadata.name={pod_name}",
                timeout_seconds=max(1, math.ceil(remaining)),
                _request_timeout=(REQUEST_TIMEOUT[0], remaining + REQUEST_TIMEOUT[0]),
            ):
                if event["type"] == "ERROR":
                    raise PodsideError(
                        f"watching pod {namespace}/{pod_name} failed: "
                        f"{event['raw_object'].get('message', event['raw_object'])}"
                    )
                if event["type"] == "DELETED":
                    raise PodsideError(f"pod {namespace}/{pod_name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    last = event["object"]
                    if check(last):
                        watcher.stop()
                        return
                if time.monotonic() >= deadline:
                    watcher.stop()
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
) -> AgentEndpoint:
    """A running agent in the target's pod and a token it accepts: one already there for the
    same container that speaks this podside's protocol (with the token this user holds for
    it, else joined with a fresh one), or a new ephemeral container (random port, fresh
    token) once it runs."""
    tokens = tokens or TokenCache()
    core = client.CoreV1Api(ctx.api_client)
    where = f"pod {target.namespace}/{target.pod}"
    with api_errors(ctx, f"get pods in namespace {target.namespace}"):
        pod: Any = core.read_namespaced_pod(
            target.pod, target.namespace, _request_timeout=REQUEST_TIMEOUT
        )
    pod_uid = str(pod.metadata.uid)
    agents = running_agents(pod, target)
    for agent in agents:
        token = tokens.get(pod_uid, agent.container)
        if token is not None:
            progress(f"reusing the agent {agent.container} in {where}")
            # Its starter may have ended before it delivered the code: if it is this podside's
            # code, this session can deliver it, should the agent not answer.
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
    if agents:
        endpoint = _join(ctx, target, agents[0], image, progress, timeout)
        if endpoint is not None:
            tokens.put(pod_uid, endpoint.container, endpoint.token)
            return endpoint

    name = f"{AGENT_NAME_PREFIX}{_random_suffix()}"
    port = secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0]) + PORT_RANGE[0]
    token = new_token()
    container = {
        **_agent_container(name, image, _agent_args(port), token),
        "targetContainerName": target.container,
    }
    progress(f"starting the agent in {where} (container {target.container}, image {image.name})")
    _add_ephemeral_container(ctx, target, container)
    # Kept from the moment the container exists: a session ended while it starts still
    # leaves this user able to reuse it.
    tokens.put(pod_uid, name, token)

    def running(pod: Any) -> bool:
        state = _container_state(pod.status.ephemeral_container_statuses, name)
        failure = _failure(state, f"the agent {name} in {where}")
        if failure is not None:
            raise PodsideError(failure)
        return bool(state is not None and state.running)

    def on_timeout(pod: Any) -> str:
        state = _container_state(pod.status.ephemeral_container_statuses, name) if pod else None
        return (
            f"the agent {name} in {where} is not running after {timeout:g}s "
            f"({_waiting_detail(state)}); see `kubectl describe pod -n {target.namespace} "
            f"{target.pod}`"
        )

    _wait_for_pod(ctx, target.namespace, target.pod, timeout, running, on_timeout)
    progress("agent running")
    return AgentEndpoint(
        target.namespace, target.pod, port, token, name, reused=False, code=image.code()
    )


def _join(
    ctx: KubeContext,
    target: Target,
    agent: RunningAgent,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float,
) -> AgentEndpoint | None:
    """Make `agent` accept a fresh token through an enrollment container; None if the agent
    ended meanwhile (it reached its idle exit), so that a new one is started instead."""
    where = f"pod {target.namespace}/{target.pod}"
    name = f"podside-enroll-{_random_suffix()}"
    token = new_token()
    container = {
        **_agent_container(name, image, [ENROLL_FLAG, "--port", str(agent.port)], token),
        # The agent checks the enrolling process's capabilities in /proc: it must be in the
        # agent's PID namespace, the target container's.
        "targetContainerName": target.container,
    }
    progress(f"joining the agent {agent.container} in {where} (container {name})")
    try:
        _add_ephemeral_container(ctx, target, container)
    except PodsideError as error:
        raise PodsideError(
            f"the agent {agent.container} in {where} was started by another session, and "
            f"this machine holds no token for it; joining it: {error.message}",
            error.exit_code,
        ) from None
    outcome: list[bool] = []

    def finished(pod: Any) -> bool:
        statuses = pod.status.ephemeral_container_statuses
        state = _container_state(statuses, name)
        if state is not None and state.terminated and state.terminated.exit_code == 0:
            outcome.append(True)
            return True
        failure = _failure(state, f"joining the agent {agent.container} in {where}: {name}")
        if failure is None:
            return False
        agent_state = _container_state(statuses, agent.container)
        if agent_state is None or not agent_state.running:
            outcome.append(False)
            return True
        raise PodsideError(failure)

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


def _add_ephemeral_container(ctx: KubeContext, target: Target, container: dict[str, Any]) -> None:
    core = client.CoreV1Api(ctx.api_client)
    where = f"pod {target.namespace}/{target.pod}"
    with api_errors(ctx, f"patch pods/ephemeralcontainers in namespace {target.namespace}"):
        try:
            core.patch_namespaced_pod_ephemeralcontainers(
                target.pod,
                target.namespace,
                {"spec": {"ephemeralContainers": [container]}},
                # Strategic merge adds to the list by name; a merge patch would replace the
                # list, which the API server refuses once the pod has ephemeral containers.
                _content_type="application/strategic-merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                raise PodsideError(
                    f"cannot add the agent to {where}: {status_message(error)} (the pod is gone, "
                    "or the cluster is older than Kubernetes 1.25 and has no ephemeral "
                    "containers; --targetless needs none)"
                ) from None
            raise


def ensure_targetless_agent(
    ctx: KubeContext,
    *,
    image: AgentImage,
    progress: Callable[[str], None],
    timeout: float = 60.0,
) -> AgentEndpoint:
    """A pod of its own running the agent in the context's namespace, for outgoing traffic and
    DNS without a target; it exits (and the pod completes) once idle."""
    core = client.CoreV1Api(ctx.api_client)
    namespace = ctx.namespace
    name = f"{AGENT_NAME_PREFIX}{_random_suffix()}"
    port = secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0]) + PORT_RANGE[0]
    # Never reused, so the token stays in this process alone.
    token = new_token()
    # A plain manifest: the client serializes dicts as they are, as for the patch above.
    body: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict([AGENT_POD_LABEL])},
        "spec": {
            "restartPolicy": "Never",
            "containers": [_agent_container(TARGETLESS_CONTAINER, image, _agent_args(port), token)],
        },
    }
    where = f"pod {namespace}/{name}"
    progress(f"starting the agent in a new {where} (image {image.name})")
    with api_errors(ctx, f"create pods in namespace {namespace}"):
        core.create_namespaced_pod(namespace, body, _request_timeout=REQUEST_TIMEOUT)

    def running(pod: Any) -> bool:
        state = _container_state(pod.status.container_statuses, TARGETLESS_CONTAINER)
        failure = _failure(state, f"the agent in {where}")
        if failure is not None:
            raise PodsideError(failure)
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
