"""Targets: what `--target KIND/NAME` names, the running pod and container it comes down to,
and the list of targets `podside targets` and the editor's picker show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from podside.errors import PodsideError
from podside.kube import rest
from podside.kube.config import (
    KubeContext,
    api_errors,
    did_you_mean,
    list_namespaces,
)

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# The label of podside's own targetless agent pods, which are never targets themselves.
AGENT_POD_LABEL = ("app.kubernetes.io/name", "podside-agent")


@dataclass(frozen=True)
class Kind:
    """A kind of target, named as targets are written ("deployment") and as RBAC and API paths
    name it ("deployments")."""

    name: str
    plural: str

    def read(self, ctx: KubeContext, name: str, namespace: str) -> Any:
        return rest.get(ctx, self.plural, namespace, name)

    def list_in(self, ctx: KubeContext, namespace: str | None, **query: Any) -> list[Any]:
        """Every object of this kind in `namespace` (None: in all namespaces)."""
        with api_errors(ctx, f"list {self.plural} {_where(namespace)}"):
            return rest.list_items(ctx, self.plural, namespace, **query)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("pod", "pods"),
        Kind("deployment", "deployments"),
        Kind("statefulset", "statefulsets"),
        Kind("daemonset", "daemonsets"),
        Kind("replicaset", "replicasets"),
        Kind("job", "jobs"),
        Kind("service", "services"),
    )
}
# kubectl's short names and plurals, so `deploy/blog` and `svc/blog` work as they do there.
KIND_ALIASES: dict[str, str] = {
    **{name: name for name in KINDS},
    **{kind.plural: name for name, kind in KINDS.items()},
    "po": "pod",
    "deploy": "deployment",
    "sts": "statefulset",
    "ds": "daemonset",
    "rs": "replicaset",
    "svc": "service",
}
# The order `podside targets` lists kinds in: what people usually target first.
LISTED_KINDS = ("deployment", "statefulset", "daemonset", "replicaset", "job", "service", "pod")


@dataclass
class Target:
    """A target as the user named it, and the running pod and container it resolved to."""

    kind: str
    name: str
    namespace: str
    pod: str
    container: str
    pod_ip: str | None
    # (port, path) of the pod's HTTP probes: steal always lets the kubelet's requests through.
    probes: tuple[tuple[int, str], ...] = ()
    # The label selector of a workload or service (its other replicas); "" for a pod.
    selector: str = ""


def _where(namespace: str | None) -> str:
    return f"in namespace {namespace}" if namespace else "in all namespaces"


def parse_target(text: str) -> tuple[str, str]:
    """`deploy/blog` -> ("deployment", "blog"); a bare name is a pod."""
    kind_text, slash, name = text.partition("/")
    if not slash:
        kind_text, name = "pod", text
    kind = KIND_ALIASES.get(kind_text.lower())
    if kind is None:
        raise PodsideError(
            f"unknown target kind {kind_text!r} in {text!r}: use one of "
            + ", ".join(f"{name}/NAME" for name in KINDS)
        )
    if not name or "/" in name:
        raise PodsideError(f"bad target {text!r}: write KIND/NAME, e.g. deployment/blog")
    return kind, name


def _is_running(pod: Any) -> bool:
    return (
        pod.status is not None
        and pod.status.phase == "Running"
        and not pod.metadata.deletion_timestamp
    )


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _describe_pod_state(pod: Any) -> str:
    """`Pending (ContainerCreating)`, `Running, not ready`: why a pod is not a usable target."""
    if pod.metadata.deletion_timestamp:
        return "terminating"
    phase = (pod.status.phase if pod.status else None) or "Unknown"
    reasons = [
        status.state.waiting.reason
        for status in (pod.status.container_statuses if pod.status else None) or []
        if status.state and status.state.waiting and status.state.waiting.reason
    ]
    if phase == "Running" and not _is_ready(pod):
        return "Running, not ready" + (f" ({', '.join(reasons)})" if reasons else "")
    return phase + (f" ({', '.join(reasons)})" if reasons else "")


def label_selector(selector: Any) -> str:
    """A LabelSelector (matchLabels, matchExpressions) as the `labelSelector` query string."""
    terms = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(expression.get("values") or [])  # `.values` is the dict's method
        terms.append(
            {
                "In": f"{expression.key} in ({values})",
                "NotIn": f"{expression.key} notin ({values})",
                "Exists": expression.key,
                "DoesNotExist": f"!{expression.key}",
            }[expression.operator]
        )
    return ",".join(terms)


def _selector_of(kind: str, obj: Any) -> str:
    if kind == "service":
        labels = obj.spec.selector or {}
        return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    return label_selector(obj.spec.selector) if obj.spec.selector else ""


def _missing_namespace(ctx: KubeContext, namespace: str) -> PodsideError | None:
    """An error naming the closest namespaces if `namespace` does not exist; None if it does,
    or if the user may not read namespaces and so cannot tell."""
    with api_errors(ctx, f"get namespace {namespace}"):
        try:
            rest.get(ctx, "namespaces", None, namespace)
        except ApiException as error:
            if error.status == 403:
                return None
            if error.status != 404:
                raise
        else:
            return None
    try:
        hint = did_you_mean(namespace, list_namespaces(ctx), "namespaces")
    except PodsideError:
        hint = ""
    return PodsideError(f"namespace {namespace!r} not found in context {ctx.name}{hint}")


def _not_found(ctx: KubeContext, kind: str, name: str, bare: bool) -> PodsideError:
    """Say what is missing, the namespace or the object, with the closest existing names."""
    namespace = ctx.namespace
    missing_namespace = _missing_namespace(ctx, namespace)
    if missing_namespace is not None:
        return missing_namespace
    candidates = [f"{kind}/{obj.metadata.name}" for obj in KINDS[kind].list_in(ctx, namespace)]
    if bare:
        # A bare name is a pod, but people often mean the workload of that name.
        for workload in ("deployment", "statefulset", "daemonset"):
            try:
                objects = KINDS[workload].list_in(ctx, namespace)
            except PodsideError:
                continue
            candidates += [f"{workload}/{obj.metadata.name}" for obj in objects]
    hint = did_you_mean(
        name,
        candidates,
        f"{KINDS[kind].plural} there",
        key=lambda candidate: candidate.partition("/")[2],
    )
    return PodsideError(f"{kind}/{name} not found in namespace {namespace}{hint}")


def _read(ctx: KubeContext, kind: str, name: str, bare: bool) -> Any:
    with api_errors(ctx, f"get {KINDS[kind].plural} {_where(ctx.namespace)}"):
        try:
            return KINDS[kind].read(ctx, name, ctx.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
    raise _not_found(ctx, kind, name, bare)


_NEVER = datetime.max.replace(tzinfo=UTC)


def _ready_since(pod: Any) -> datetime:
    """When the pod's Ready condition last turned True (its creation if the condition says no
    time)."""
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == "Ready" and condition.last_transition_time is not None:
            return condition.last_transition_time  # type: ignore[no-any-return]
    created: datetime | None = pod.metadata.creation_timestamp
    return created or _NEVER


def _restarts(pod: Any) -> int:
    return sum(status.restart_count or 0 for status in (pod.status.container_statuses or []))


def longest_ready_first(pods: list[Any]) -> list[Any]:
    """`pods` in kubectl's order for `kubectl exec deploy/X`: ready the longest first, then
    fewer restarts, then the oldest. It is also the reverse of the order in which a
    ReplicaSet scales down (the pod ready most recently goes first), so the first pod is the
    one a scale-down keeps longest."""
    return sorted(
        pods,
        key=lambda pod: (
            _ready_since(pod),
            _restarts(pod),
            pod.metadata.creation_timestamp or _NEVER,
        ),
    )


def _ready_pods(ctx: KubeContext, selector: str) -> list[Any]:
    """The running and ready pods `selector` selects, ready the longest first."""
    pods = KINDS["pod"].list_in(ctx, ctx.namespace, labelSelector=selector)
    return longest_ready_first([pod for pod in pods if _is_running(pod) and _is_ready(pod)])


def _pick_pod(ctx: KubeContext, kind: str, name: str, obj: Any) -> Any:
    """The running and ready pod behind a workload or service that has been ready longest."""
    selector = _selector_of(kind, obj)
    if not selector:
        raise PodsideError(
            f"{kind}/{name} in namespace {ctx.namespace} selects no pods (it has no selector): "
            "name a pod with --target pod/NAME"
        )
    ready = _ready_pods(ctx, selector)
    if ready:
        return ready[0]
    pods = KINDS["pod"].list_in(ctx, ctx.namespace, labelSelector=selector)
    if not pods:
        raise PodsideError(f"no pod behind {kind}/{name} in namespace {ctx.namespace} ({selector})")
    states = ", ".join(
        f"{pod.metadata.name}: {_describe_pod_state(pod)}"
        for pod in sorted(pods, key=lambda p: p.metadata.name)[:5]
    )
    raise PodsideError(
        f"no ready pod behind {kind}/{name} in namespace {ctx.namespace} ({states}); "
        "to use one anyway, name it with --target pod/NAME"
    )


def replica_targets(ctx: KubeContext, primary: Target, container: str | None) -> list[Target]:
    """Every ready pod behind `primary`'s workload or service (the primary's pod among them
    while it is ready), as targets of their own; none for a pod target."""
    if not primary.selector:
        return []
    return [
        _target_of(primary.kind, primary.name, ctx.namespace, pod, container, primary.selector)
        for pod in _ready_pods(ctx, primary.selector)
    ]


def _target_of(
    kind: str, name: str, namespace: str, pod: Any, container: str | None, selector: str
) -> Target:
    return Target(
        kind=kind,
        name=name,
        namespace=namespace,
        pod=pod.metadata.name,
        container=choose_container(pod, container),
        pod_ip=pod.status.pod_ip,
        probes=http_probes(pod),
        selector=selector,
    )


def choose_container(pod: Any, container: str | None) -> str:
    """`container`, else the pod's default-container annotation, else its first container."""
    names = [c.name for c in pod.spec.containers]
    if container is not None:
        if container not in names:
            raise PodsideError(
                f"pod {pod.metadata.namespace}/{pod.metadata.name} has no container {container!r}; "
                f"its containers: {', '.join(names)}"
            )
        return container
    annotated = (pod.metadata.annotations or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    return str(annotated) if annotated in names else str(names[0])


def resolve_target(ctx: KubeContext, target: str, container: str | None = None) -> Target:
    """The running pod and container that `target` (e.g. `deploy/blog`) stands for in the
    context's namespace; workloads and services give the pod ready the longest."""
    kind, name = parse_target(target)
    obj = _read(ctx, kind, name, bare="/" not in target)
    if kind == "pod":
        if not _is_running(obj):
            raise PodsideError(
                f"pod {ctx.namespace}/{name} is not running ({_describe_pod_state(obj)})"
            )
        return _target_of(kind, name, ctx.namespace, obj, container, "")
    pod = _pick_pod(ctx, kind, name, obj)
    return _target_of(kind, name, ctx.namespace, pod, container, _selector_of(kind, obj))


def http_probes(pod: Any) -> tuple[tuple[int, str], ...]:
    """Every httpGet liveness, readiness and startup probe of the pod, port names resolved."""
    found: set[tuple[int, str]] = set()
    for container in pod.spec.containers or []:
        named = {port.name: port.container_port for port in container.ports or [] if port.name}
        for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
            action = probe.http_get if probe is not None else None
            if action is None:
                continue
            port = action.port
            number = named.get(port) if isinstance(port, str) and not port.isdigit() else int(port)
            if number:
                found.add((number, action.path or "/"))
    return tuple(sorted(found))


def _container_ports(containers: list[Any]) -> list[int]:
    return sorted({port.container_port for c in containers for port in c.ports or []})


def _owned_by(obj: Any, kind: str) -> bool:
    return any(ref.kind == kind for ref in obj.metadata.owner_references or [])


def _is_podside_agent(pod: Any) -> bool:
    key, value = AGENT_POD_LABEL
    return bool((pod.metadata.labels or {}).get(key) == value)


def _labels_match(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    return all((labels or {}).get(key) == value for key, value in selector.items())


def list_targets(
    ctx: KubeContext, namespace: str | None, all_namespaces: bool = False
) -> list[dict[str, Any]]:
    """Workloads, services with a selector, and pods of `namespace` (default: the context's),
    or of every namespace: `{"kind", "name", "namespace", "containers", "ports"}` each, sorted
    by namespace, then kind (LISTED_KINDS order), then name.

    A service's ports are its own (`port`), its containers those of the pods it selects.
    """
    where = None if all_namespaces else namespace or ctx.namespace
    found = {kind: KINDS[kind].list_in(ctx, where) for kind in LISTED_KINDS}
    targets: list[dict[str, Any]] = []

    def add(kind: str, obj: Any, containers: list[str], ports: list[int]) -> None:
        targets.append(
            {
                "kind": kind,
                "name": obj.metadata.name,
                "namespace": obj.metadata.namespace,
                "containers": containers,
                "ports": ports,
            }
        )

    for kind in ("deployment", "statefulset", "daemonset", "replicaset", "job"):
        for obj in found[kind]:
            if kind == "replicaset" and _owned_by(obj, "Deployment"):
                continue  # a deployment's replicasets are its own business
            containers = obj.spec.template.spec.containers
            add(kind, obj, [c.name for c in containers], _container_ports(containers))
    for service in found["service"]:
        selector = service.spec.selector
        if not selector:
            continue
        selected = [
            pod
            for pod in found["pod"]
            if pod.metadata.namespace == service.metadata.namespace
            and _labels_match(selector, pod.metadata.labels)
        ]
        containers = sorted({c.name for pod in selected for c in pod.spec.containers})
        add("service", service, containers, sorted({p.port for p in service.spec.ports or []}))
    for pod in found["pod"]:
        finished = pod.status is not None and pod.status.phase in ("Succeeded", "Failed")
        if finished or _is_podside_agent(pod):
            continue  # nothing runs there to target, or it is podside's own
        containers = pod.spec.containers
        add("pod", pod, [c.name for c in containers], _container_ports(containers))
    if where is not None and not targets:
        # Listing a namespace that does not exist is not an error to the API server.
        missing_namespace = _missing_namespace(ctx, where)
        if missing_namespace is not None:
            raise missing_namespace
    order = {kind: index for index, kind in enumerate(LISTED_KINDS)}
    targets.sort(key=lambda t: (t["namespace"], order[t["kind"]], t["name"]))
    return targets
