"""The resources the sandbox serves, with the facts discovery and the handlers need about each."""

from __future__ import annotations

from dataclasses import dataclass, field

READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # subresource name -> kind it is served as (status, scale, ephemeralcontainers...)
    subresources: dict[str, str] = field(default_factory=dict)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version


def _core(
    plural: str,
    kind: str,
    namespaced: bool = True,
    verbs: tuple[str, ...] = ALL_VERBS,
    short_names: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    subresources: dict[str, str] | None = None,
) -> Resource:
    return Resource(
        plural,
        kind.lower(),
        kind,
        "",
        "v1",
        namespaced,
        verbs,
        short_names,
        categories,
        subresources or {},
    )


def _group(
    group: str,
    plural: str,
    kind: str,
    short_names: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    subresources: dict[str, str] | None = None,
) -> Resource:
    return Resource(
        plural,
        kind.lower(),
        kind,
        group,
        "v1",
        True,
        ALL_VERBS,
        short_names,
        categories,
        subresources or {},
    )


RESOURCES: tuple[Resource, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources={"status": "Namespace"},
    ),
    _core(
        "nodes",
        "Node",
        namespaced=False,
        short_names=("no",),
        verbs=READ_VERBS,
        subresources={"status": "Node"},
    ),
    _core(
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources={
            "status": "Pod",
            "log": "Pod",
            "ephemeralcontainers": "Pod",
            "portforward": "PodPortForwardOptions",
        },
    ),
    _core(
        "services",
        "Service",
        short_names=("svc",),
        categories=("all",),
        subresources={"status": "Service"},
    ),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("events", "Event", short_names=("ev",)),
    _group(
        "apps",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        subresources={"status": "Deployment", "scale": "Scale"},
    ),
    _group(
        "apps",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        categories=("all",),
        subresources={"status": "ReplicaSet", "scale": "Scale"},
    ),
    _group(
        "apps",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        categories=("all",),
        subresources={"status": "StatefulSet", "scale": "Scale"},
    ),
    _group(
        "apps",
        "daemonsets",
        "DaemonSet",
        short_names=("ds",),
        categories=("all",),
        subresources={"status": "DaemonSet"},
    ),
    _group("batch", "jobs", "Job", categories=("all",), subresources={"status": "Job"}),
    Resource(
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        "authorization.k8s.io",
        "v1",
        False,
        verbs=("create",),
    ),
)

GROUPS: tuple[str, ...] = ("apps", "batch", "authorization.k8s.io")

BY_GROUP_AND_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}


def lookup(group: str, plural: str) -> Resource | None:
    return BY_GROUP_AND_PLURAL.get((group, plural))


def resource(group: str, plural: str) -> Resource:
    """A resource the sandbox is known to serve (a lookup that cannot fail)."""
    return BY_GROUP_AND_PLURAL[(group, plural)]


def resources_in(group: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group]
