"""The control plane's loops: workloads make pods (deployment -> replicaset -> pods,
statefulset, daemonset, job), services get endpoints and DNAT rules, deleted owners take their
dependents with them, terminating namespaces are emptied.

Every loop is level-based: after any change it looks at the whole store and writes only what
differs, so it converges however events interleave (there are few objects in a sandbox).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from podside.sandbox.api.resources import Resource
from podside.sandbox.api.resources import resource as served
from podside.sandbox.api.selectors import match_label_selector
from podside.sandbox.api.store import Event, Object, Store, now_rfc3339
from podside.sandbox.layout import NODE_NAME
from podside.sandbox.node.network import ServiceRule
from podside.sandbox.node.probes import resolve_port

log = logging.getLogger(__name__)


PODS = served("", "pods")
SERVICES = served("", "services")
ENDPOINTS = served("", "endpoints")
NAMESPACES = served("", "namespaces")
DEPLOYMENTS = served("apps", "deployments")
REPLICASETS = served("apps", "replicasets")
STATEFULSETS = served("apps", "statefulsets")
DAEMONSETS = served("apps", "daemonsets")
JOBS = served("batch", "jobs")
OWNED_KINDS = (PODS, REPLICASETS, ENDPOINTS)
NAMESPACED = [
    r
    for r in (
        PODS,
        SERVICES,
        ENDPOINTS,
        DEPLOYMENTS,
        REPLICASETS,
        STATEFULSETS,
        DAEMONSETS,
        JOBS,
        served("", "configmaps"),
        served("", "secrets"),
        served("", "serviceaccounts"),
        served("", "events"),
    )
]


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # Like the real pod-template-hash: short, and only characters that are safe in names.
    return "".join(c for c in digest if c in "bcdfghjklmnpqrstvwxz2456789")[:10]


def owner_reference(owner: Object) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: Object, owner: Object) -> bool:
    return any(
        ref.get("uid") == owner["metadata"]["uid"] and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def _active(pod: Object) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in ("Succeeded", "Failed")


def _ready_since(pod: Object) -> str:
    """When the pod's Ready condition last changed (RFC 3339, which sorts as time does)."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition.get("lastTransitionTime") or "")
    return ""


def _pod_ready(pod: Object) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


class Controllers:
    def __init__(
        self,
        store: Store,
        apply_service_rules: Callable[[list[ServiceRule]], None],
        delete: Callable[[Resource, str, str], None],
    ) -> None:
        self.store = store
        self.apply_service_rules = apply_service_rules
        self.delete = delete  # graceful delete, as the API server does it
        self._changed = asyncio.Event()
        self._service_rules: list[ServiceRule] | None = None
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile failed")
            # Let a burst of changes land before the next pass.
            await asyncio.sleep(0.01)

    def reconcile(self) -> None:
        self._namespaces()
        self._garbage_collect()
        for deployment in self.store.list(DEPLOYMENTS):
            self._deployment(deployment)
        for replicaset in self.store.list(REPLICASETS):
            self._replicaset(replicaset)
        for statefulset in self.store.list(STATEFULSETS):
            self._statefulset(statefulset)
        for daemonset in self.store.list(DAEMONSETS):
            self._daemonset(daemonset)
        for job in self.store.list(JOBS):
            self._job(job)
        self._endpoints()

    def _set_status(self, resource: Resource, obj: Object, status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            obj["status"] = status
            self.store.update(resource, obj, expected_version=None)

    def _namespaces(self) -> None:
        for namespace in self.store.list(NAMESPACES):
            if not namespace["metadata"].get("deletionTimestamp"):
                continue
            name = namespace["metadata"]["name"]
            remaining = 0
            for resource in NAMESPACED:
                for obj in self.store.list(resource, name):
                    remaining += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.delete(resource, name, obj["metadata"]["name"])
            if remaining == 0:
                self.store.delete(NAMESPACES, "", name)

    def _garbage_collect(self) -> None:
        uids = {
            obj["metadata"]["uid"]
            for resource in (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS, JOBS, SERVICES)
            for obj in self.store.list(resource)
        }
        for resource in OWNED_KINDS:
            for obj in self.store.list(resource):
                references = obj["metadata"].get("ownerReferences") or []
                if (
                    references
                    and not any(ref.get("uid") in uids for ref in references)
                    and not obj["metadata"].get("deletionTimestamp")
                ):
                    self.delete(resource, obj["metadata"]["namespace"], obj["metadata"]["name"])

    def _new_pod(
        self,
        owner: Object,
        name: str | None,
        labels: dict[str, str],
        extra_spec: dict[str, Any] | None = None,
    ) -> None:
        template = copy.deepcopy(owner["spec"]["template"])
        metadata = template.get("metadata") or {}
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        metadata["namespace"] = owner["metadata"]["namespace"]
        metadata["ownerReferences"] = [owner_reference(owner)]
        if name:
            metadata["name"] = name
        else:
            metadata["generateName"] = owner["metadata"]["name"] + "-"
        spec = template["spec"]
        spec.update(extra_spec or {})
        spec.setdefault("nodeName", NODE_NAME)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        self.store.create(PODS, pod)

    def _owned_pods(self, owner: Object) -> list[Object]:
        return [
            pod
            for pod in self.store.list(PODS, owner["metadata"]["namespace"])
            if _owned_by(pod, owner)
        ]

    def _deployment(self, deployment: Object) -> None:
        namespace = deployment["metadata"]["namespace"]
        template = deployment["spec"]["template"]
        pod_hash = template_hash(template)
        desired = int(deployment["spec"].get("replicas", 1))
        owned = [rs for rs in self.store.list(REPLICASETS, namespace) if _owned_by(rs, deployment)]
        current = next(
            (
                rs
                for rs in owned
                if rs["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash
            ),
            None,
        )
        if current is None:
            labels = {
                **(template.get("metadata") or {}).get("labels", {}),
                "pod-template-hash": pod_hash,
            }
            selector = copy.deepcopy(deployment["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = labels
            current = self.store.create(
                REPLICASETS,
                {
                    "metadata": {
                        "name": f"{deployment['metadata']['name']}-{pod_hash}",
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {
                            "deployment.kubernetes.io/revision": str(len(owned) + 1),
                            "deployment.kubernetes.io/desired-replicas": str(desired),
                        },
                        "ownerReferences": [owner_reference(deployment)],
                    },
                    "spec": {
                        "replicas": desired,
                        "selector": selector,
                        "template": rs_template,
                        "minReadySeconds": deployment["spec"].get("minReadySeconds", 0),
                    },
                    "status": {"replicas": 0},
                },
            )
        elif current["spec"].get("replicas") != desired:
            current["spec"]["replicas"] = desired
            current = self.store.update(REPLICASETS, current, expected_version=None)
        new_ready = int((current.get("status") or {}).get("readyReplicas", 0))
        # Rolling update: old replica sets shrink only as far as new pods are ready.
        for old in owned:
            if old["metadata"]["uid"] == current["metadata"]["uid"]:
                continue
            keep = max(0, min(int(old["spec"].get("replicas", 0)), desired - new_ready))
            if old["spec"].get("replicas") != keep:
                old["spec"]["replicas"] = keep
                self.store.update(REPLICASETS, old, expected_version=None)
        all_sets = [
            rs for rs in self.store.list(REPLICASETS, namespace) if _owned_by(rs, deployment)
        ]
        replicas = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in all_sets)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in all_sets)
        updated = int((current.get("status") or {}).get("replicas", 0))
        available = ready >= desired
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
            "conditions": self._conditions(
                deployment,
                {
                    "Available": (
                        "True" if available else "False",
                        "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                        "Deployment has minimum availability."
                        if available
                        else "Deployment does not have minimum availability.",
                    ),
                    "Progressing": (
                        "True",
                        "NewReplicaSetAvailable"
                        if available and updated == desired
                        else "ReplicaSetUpdated",
                        f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.'
                        if available
                        else f'ReplicaSet "{current["metadata"]["name"]}" is progressing.',
                    ),
                },
            ),
        }
        for key in (
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ):
            if status[key] == 0 and key != "replicas":
                del status[key]
        self._set_status(DEPLOYMENTS, deployment, status)

    @staticmethod
    def _conditions(obj: Object, wanted: dict[str, tuple[str, str, str]]) -> list[dict[str, Any]]:
        previous = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        conditions = []
        for kind, (value, reason, message) in wanted.items():
            old = previous.get(kind) or {}
            now = now_rfc3339()
            transition = old.get("lastTransitionTime", now) if old.get("status") == value else now
            updated = old.get("lastUpdateTime", now) if old.get("reason") == reason else now
            conditions.append(
                {
                    "type": kind,
                    "status": value,
                    "lastUpdateTime": updated,
                    "lastTransitionTime": transition,
                    "reason": reason,
                    "message": message,
                }
            )
        return conditions

    def _scale_pods(self, owner: Object, desired: int, labels: dict[str, str]) -> list[Object]:
        pods = [pod for pod in self._owned_pods(owner) if _active(pod)]
        for _ in range(desired - len(pods)):
            self._new_pod(owner, None, labels)
        if len(pods) > desired:
            # Remove the least useful first, as the ReplicaSet controller ranks them: not
            # ready before ready, then the one ready most recently, then the newest (a pod
            # that has served longest stays).
            pods.sort(
                key=lambda pod: (_ready_since(pod), pod["metadata"]["creationTimestamp"]),
                reverse=True,
            )
            pods.sort(key=_pod_ready)  # stable: the most recently ready first in each group
            for pod in pods[: len(pods) - desired]:
                self.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        return [pod for pod in self._owned_pods(owner) if _active(pod)]

    def _replicaset(self, replicaset: Object) -> None:
        desired = int(replicaset["spec"].get("replicas", 1))
        pods = self._scale_pods(
            replicaset,
            desired,
            (replicaset["spec"]["template"].get("metadata") or {}).get("labels") or {},
        )
        ready = sum(1 for pod in pods if _pod_ready(pod))
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": replicaset["metadata"].get("generation", 1),
        }
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        self._set_status(REPLICASETS, replicaset, status)

    def _statefulset(self, statefulset: Object) -> None:
        name = statefulset["metadata"]["name"]
        desired = int(statefulset["spec"].get("replicas", 1))
        pods = {pod["metadata"]["name"]: pod for pod in self._owned_pods(statefulset)}
        labels = (statefulset["spec"]["template"].get("metadata") or {}).get("labels") or {}
        revision = f"{name}-{template_hash(statefulset['spec']['template'])}"
        for ordinal in range(desired):
            pod_name = f"{name}-{ordinal}"
            if pod_name in pods:
                continue
            # OrderedReady: a pod is made only once all before it are ready.
            if statefulset["spec"].get("podManagementPolicy") != "Parallel" and not all(
                _pod_ready(pods[f"{name}-{i}"]) for i in range(ordinal) if f"{name}-{i}" in pods
            ):
                break
            self._new_pod(
                statefulset,
                pod_name,
                {
                    **labels,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(ordinal),
                    "controller-revision-hash": revision,
                },
                {"hostname": pod_name, "subdomain": statefulset["spec"].get("serviceName", "")},
            )
            break
        for pod_name, pod in pods.items():
            ordinal = pod_name.rsplit("-", 1)[-1]
            if (
                ordinal.isdigit()
                and int(ordinal) >= desired
                and not pod["metadata"].get("deletionTimestamp")
            ):
                self.delete(PODS, pod["metadata"]["namespace"], pod_name)
        current = [pod for pod in self._owned_pods(statefulset) if _active(pod)]
        ready = sum(1 for pod in current if _pod_ready(pod))
        status: dict[str, Any] = {
            "observedGeneration": statefulset["metadata"].get("generation", 1),
            "replicas": len(current),
            "currentReplicas": len(current),
            "updatedReplicas": len(current),
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        if ready:
            status["readyReplicas"] = ready
        self._set_status(STATEFULSETS, statefulset, status)

    def _daemonset(self, daemonset: Object) -> None:
        labels = (daemonset["spec"]["template"].get("metadata") or {}).get("labels") or {}
        pods = self._scale_pods(daemonset, 1, labels)
        ready = sum(1 for pod in pods if _pod_ready(pod))
        self._set_status(
            DAEMONSETS,
            daemonset,
            {
                "currentNumberScheduled": len(pods),
                "desiredNumberScheduled": 1,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "observedGeneration": daemonset["metadata"].get("generation", 1),
                "updatedNumberScheduled": len(pods),
                "numberAvailable": ready,
                **({} if ready else {"numberUnavailable": 1}),
            },
        )

    def _job(self, job: Object) -> None:
        uid = job["metadata"]["uid"]
        spec = job["spec"]
        if not spec.get("selector"):
            # The API server generates a job's selector from its uid.
            labels = {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": job["metadata"]["name"],
                "controller-uid": uid,
                "job-name": job["metadata"]["name"],
            }
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template_metadata = spec["template"].setdefault("metadata", {})
            template_metadata["labels"] = {**(template_metadata.get("labels") or {}), **labels}
            job = self.store.update(JOBS, job, expected_version=None)
            spec = job["spec"]
        pods = self._owned_pods(job)
        succeeded = sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Failed")
        active = [pod for pod in pods if _active(pod)]
        completions = int(spec.get("completions", 1))
        status: dict[str, Any] = dict(job.get("status") or {})
        status.setdefault("startTime", now_rfc3339())
        conditions = {c["type"] for c in status.get("conditions") or []}
        finished = "Complete" in conditions or "Failed" in conditions
        if not finished:
            if succeeded >= completions:
                status["completionTime"] = now_rfc3339()
                status["conditions"] = [
                    {
                        "type": "SuccessCriteriaMet",
                        "status": "True",
                        "lastProbeTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                        "reason": "CompletionsReached",
                        "message": "Reached expected number of succeeded pods",
                    },
                    {
                        "type": "Complete",
                        "status": "True",
                        "lastProbeTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                        "reason": "CompletionsReached",
                        "message": "Reached expected number of succeeded pods",
                    },
                ]
            elif failed > int(spec.get("backoffLimit", 6)):
                status["conditions"] = [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "lastProbeTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "lastProbeTime": now_rfc3339(),
                        "lastTransitionTime": now_rfc3339(),
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    },
                ]
            else:
                wanted = min(int(spec.get("parallelism", 1)), completions - succeeded)
                labels = (spec["template"].get("metadata") or {}).get("labels") or {}
                for _ in range(wanted - len(active)):
                    self._new_pod(job, None, labels)
        status["active"] = len([pod for pod in self._owned_pods(job) if _active(pod)])
        status["succeeded"], status["failed"] = succeeded, failed
        status["ready"] = sum(1 for pod in active if _pod_ready(pod))
        status["terminating"] = sum(1 for pod in pods if pod["metadata"].get("deletionTimestamp"))
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]
        self._set_status(JOBS, job, status)

    def _endpoints(self) -> None:
        rules: list[ServiceRule] = []
        for service in self.store.list(SERVICES):
            namespace = service["metadata"]["namespace"]
            selector = service["spec"].get("selector")
            if not selector:
                continue
            pods = [
                pod
                for pod in self.store.list(PODS, namespace)
                if (pod.get("status") or {}).get("podIP")
                and _active(pod)
                and match_label_selector(
                    {"matchLabels": selector}, pod["metadata"].get("labels") or {}
                )
            ]
            subsets: dict[str, dict[str, Any]] = {}
            for pod in pods:
                ports = []
                for port in service["spec"].get("ports") or []:
                    try:
                        target = self._target_port(port, pod)
                    except ValueError:
                        continue
                    entry = {"port": target, "protocol": port.get("protocol", "TCP")}
                    if port.get("name"):
                        entry["name"] = port["name"]
                    ports.append(entry)
                key = json.dumps(ports, sort_keys=True)
                subset = subsets.setdefault(
                    key, {"addresses": [], "notReadyAddresses": [], "ports": ports}
                )
                address = {
                    "ip": pod["status"]["podIP"],
                    "nodeName": NODE_NAME,
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": namespace,
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                }
                subset["addresses" if _pod_ready(pod) else "notReadyAddresses"].append(address)
            cleaned = []
            for subset in subsets.values():
                cleaned.append({key: value for key, value in subset.items() if value})
            cleaned = [
                subset
                for subset in cleaned
                if subset.get("addresses") or subset.get("notReadyAddresses")
            ]
            self._write_endpoints(service, cleaned)
            cluster_ip = service["spec"].get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                for index, port in enumerate(service["spec"].get("ports") or []):
                    ready = [
                        (
                            address["ip"],
                            subset["ports"][index]["port"]
                            if index < len(subset.get("ports", []))
                            else 0,
                        )
                        for subset in cleaned
                        for address in subset.get("addresses") or []
                    ]
                    rules.append(
                        ServiceRule(
                            cluster_ip,
                            int(port["port"]),
                            port.get("protocol", "TCP").lower(),
                            [r for r in ready if r[1]],
                        )
                    )
        if rules != self._service_rules:
            self.apply_service_rules(rules)
            self._service_rules = rules

    @staticmethod
    def _target_port(port: dict[str, Any], pod: Object) -> int:
        target = port.get("targetPort", port["port"])
        if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
            return int(target)
        for container in pod["spec"].get("containers") or []:
            try:
                return resolve_port(target, container)
            except ValueError:
                continue
        raise ValueError(f"no container of {pod['metadata']['name']} declares port {target}")

    def _write_endpoints(self, service: Object, subsets: list[dict[str, Any]]) -> None:
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        existing = self.store.get(ENDPOINTS, namespace, name)
        labels = service["metadata"].get("labels") or {}
        if existing is None:
            body: Object = {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels,
                    "ownerReferences": [{**owner_reference(service), "controller": True}],
                }
            }
            if subsets:
                body["subsets"] = subsets
            self.store.create(ENDPOINTS, body)
        elif (existing.get("subsets") or []) != subsets:
            if subsets:
                existing["subsets"] = subsets
            else:
                existing.pop("subsets", None)
            self.store.update(ENDPOINTS, existing, expected_version=None)
