"""The node agent: runs each pod of the store as local processes and reports their status.

A pod is a holder process (`pause`) that owns the pod's network, mount and UTS namespaces;
its containers enter those namespaces with nsenter and run as ordinary processes, each in
its own session so a stop reaches the whole process group, with the user, groups and
capabilities their securityContext gives them (`security.py`). Restarts, probes, ephemeral
containers and graceful deletion follow the kubelet's rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

from podside.sandbox import owners
from podside.sandbox.api.resources import resource
from podside.sandbox.api.store import Event, Object, Store, now_rfc3339
from podside.sandbox.layout import (
    GATEWAY_IP,
    NODE_NAME,
    StateDir,
    pod_veth_name,
)
from podside.sandbox.node import network
from podside.sandbox.node.container_env import container_env, expand
from podside.sandbox.node.images import ImageUnavailable, image_id, resolve_argv
from podside.sandbox.node.netns import NamespaceSockets
from podside.sandbox.node.pod_files import MissingReference, fill_volume, hosts_file, resolv_conf
from podside.sandbox.node.probes import ProbeRunner, http_get, tcp_socket
from podside.sandbox.node.security import SecurityContextRefused, credentials

log = logging.getLogger(__name__)

PODS = resource("", "pods")
SERVICES = resource("", "services")
CONFIGMAPS = resource("", "configmaps")
SECRETS = resource("", "secrets")
# The real kubelet backs off 10 s doubling to 5 min; the sandbox is a test bed, so restarts
# come sooner (1 s doubling to 30 s) with the same CrashLoopBackOff reporting.
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
IMAGE_BACKOFF_SECONDS = 1.0
CONFIG_RETRY_SECONDS = 1.0
TERMINATION_MESSAGE_BYTES = 2048
TERMINATION_MESSAGE_LINES = 80


class ContainerWorker:
    """One container (regular or ephemeral) of a pod: starts, watches, restarts it."""

    def __init__(self, pod: PodWorker, spec: dict[str, Any], ephemeral: bool) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.ephemeral = ephemeral
        self.restart_count = 0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.started = False  # startup probe passed (or none)
        self.ready = False
        self.finished = False  # terminated and will not restart
        self.process: asyncio.subprocess.Process | None = None
        # The environment and credentials it runs with; exec probes get the same, as `runc
        # exec` gives them.
        self.env: dict[str, str] = {}
        self.setpriv: list[str] = []
        self.has_run = False
        self.task: asyncio.Task[None] | None = None
        self._stopping = False
        self._liveness_failed = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"container {self.pod.name}/{self.name}")

    def _set_state(self, state: dict[str, Any]) -> None:
        self.state = state
        self.pod.publish_status()

    @property
    def main_pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": image_id(self.spec.get("image", "")) if self.has_run else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.has_run:
            status["containerID"] = f"podside://{self.pod.uid[:8]}-{self.name}-{self.restart_count}"
        if not self.ephemeral:
            status["started"] = "running" in self.state and self.started
        return status

    def log_path(self, restart: int) -> Path:
        return self.pod.directory / "logs" / self.name / f"{restart}.log"

    def _will_restart(self, exit_code: int) -> bool:
        if self.ephemeral or self._stopping:
            return False
        policy = self.pod.spec.get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping:
            try:
                argv, env, setpriv = self._prepare()
            except ImageUnavailable as error:
                await self._wait_image(str(error))
                return
            except (MissingReference, SecurityContextRefused) as error:
                self._set_state(
                    {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
                )
                await asyncio.sleep(CONFIG_RETRY_SECONDS)
                continue
            self.env, self.setpriv = env, setpriv
            exit_code = await self._run_once(argv, env)
            if not self._will_restart(exit_code):
                self.finished = True
                self.pod.publish_status()
                return
            self.restart_count += 1
            self.last_state = self.state
            self._set_state(
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {backoff:.0f}s restarting failed container={self.name} pod={self.pod.name}_{self.pod.namespace}({self.pod.uid})",
                    }
                }
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _wait_image(self, message: str) -> None:
        """An image the sandbox cannot run: report the pull failure, as a real node keeps
        doing, until the pod goes away."""
        self._set_state({"waiting": {"reason": "ErrImagePull", "message": message}})
        await asyncio.sleep(IMAGE_BACKOFF_SECONDS)
        image = self.spec.get("image", "")
        self._set_state(
            {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}": ErrImagePull: {message}',
                }
            }
        )

    def _prepare(self) -> tuple[list[str], dict[str, str], list[str]]:
        """The argv, environment and `setpriv` prefix of the container's next start."""
        pod = self.pod.current()
        setpriv = credentials(pod, self.spec).setpriv_argv()
        target_pid = None
        target = self.spec.get("targetContainerName")
        if self.ephemeral and target and target in self.pod.containers:
            target_pid = self.pod.containers[target].main_pid
        argv = resolve_argv(self.spec, target_pid)
        env = container_env(
            pod,
            self.spec,
            self.pod.kubelet.linkable_services(self.pod.namespace),
            self.pod.lookup,
        )
        return [expand(arg, env) for arg in argv], env, setpriv

    async def _run_once(self, argv: list[str], env: dict[str, str]) -> int:
        log_path = self.log_path(self.restart_count)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started_at = now_rfc3339()
        if shutil.which(argv[0], path=env["PATH"]) is None:
            message = f'failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "{argv[0]}": executable file not found in $PATH'
            log_path.touch()
            self.has_run = True
            self._set_state(
                {
                    "terminated": {
                        "exitCode": 128,
                        "reason": "StartError",
                        "message": message,
                        "startedAt": started_at,
                        "finishedAt": now_rfc3339(),
                    }
                }
            )
            return 128
        holder = self.pod.holder_pid
        assert holder is not None
        with log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                "nsenter",
                "-t",
                str(holder),
                "-n",
                "-m",
                "-u",
                f"--wd={self.spec.get('workingDir') or '/'}",
                "--",
                *self.setpriv,
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        self.has_run = True
        has_startup = bool(self.spec.get("startupProbe"))
        self.started = not has_startup
        self.ready = not self.spec.get("readinessProbe") and self.started
        self._liveness_failed.clear()
        self._set_state({"running": {"startedAt": started_at}})
        probes = self._start_probes()
        exited = asyncio.create_task(self.process.wait())
        liveness = asyncio.create_task(self._liveness_failed.wait())
        await asyncio.wait({exited, liveness}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            log.info("%s/%s: liveness probe failed, restarting", self.pod.name, self.name)
            await self._terminate_process(
                int(self.pod.spec.get("terminationGracePeriodSeconds", 30))
            )
        liveness.cancel()
        for probe in probes:
            probe.cancel()
        exit_code = await exited
        self.ready = False
        # A process killed by signal N exits as 128+N in a container runtime.
        exit_code = 128 - exit_code if exit_code < 0 else exit_code
        reason = "Completed" if exit_code == 0 else "Error"
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self.status().get("containerID", ""),
        }
        # The sandbox has no termination-log file, so only the fallback to the logs applies.
        if exit_code and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            terminated["message"] = log_tail(log_path)
        self._set_state({"terminated": terminated})
        return exit_code

    def _start_probes(self) -> list[asyncio.Task[None]]:
        tasks = []
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = self.spec.get(kind)
            if not probe or self.ephemeral:
                continue
            runner = ProbeRunner(
                f"{self.pod.name}/{self.name} {kind}",
                probe,
                self._checker(probe),
                self._on_probe(kind),
            )
            tasks.append(asyncio.create_task(self._gated(kind, runner)))
        return tasks

    async def _gated(self, kind: str, runner: ProbeRunner) -> None:
        # Liveness and readiness wait for the startup probe, as in the kubelet.
        while kind != "startupProbe" and not self.started:
            await asyncio.sleep(0.2)
        await runner.run()

    def _checker(self, probe: dict[str, Any]) -> Any:
        kubelet, pod_ip = self.pod.kubelet, self.pod.ip or ""
        node_netns = kubelet.network.node_netns_path
        if "httpGet" in probe:
            return lambda: http_get(kubelet.sockets, node_netns, pod_ip, probe, self.spec)
        if "tcpSocket" in probe:
            return lambda: tcp_socket(kubelet.sockets, node_netns, pod_ip, probe, self.spec)
        if "exec" in probe:
            return lambda: self._exec_probe(probe)
        return self._always_ok

    @staticmethod
    async def _always_ok() -> bool:
        return True

    async def _exec_probe(self, probe: dict[str, Any]) -> bool:
        holder = self.pod.holder_pid
        if holder is None:
            return False
        process = await asyncio.create_subprocess_exec(
            "nsenter",
            "-t",
            str(holder),
            "-n",
            "-m",
            "-u",
            f"--wd={self.spec.get('workingDir') or '/'}",
            "--",
            *self.setpriv,
            *probe["exec"]["command"],
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return (
                await asyncio.wait_for(process.wait(), float(probe.get("timeoutSeconds", 1))) == 0
            )
        except TimeoutError:
            process.kill()
            return False

    def _on_probe(self, kind: str) -> Any:
        def report(ok: bool) -> None:
            if kind == "startupProbe":
                if ok:
                    self.started = True
                    self.ready = not self.spec.get("readinessProbe")
                else:
                    self._liveness_failed.set()
            elif kind == "readinessProbe":
                self.ready = ok and self.started
            elif not ok:
                self._liveness_failed.set()
            self.pod.publish_status()

        return report

    async def _terminate_process(self, grace: float) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # Children that left the group die with the pod's namespaces; the group is gone now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> None:
        self._stopping = True
        await self._terminate_process(grace)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class PodWorker:
    """One pod's sandbox (holder, network, files) and its containers."""

    def __init__(self, kubelet: Kubelet, pod: Object) -> None:
        self.kubelet = kubelet
        self.uid: str = pod["metadata"]["uid"]
        self.name: str = pod["metadata"]["name"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.spec: dict[str, Any] = pod["spec"]
        self.directory = kubelet.state.pod_dir(self.uid)
        self.netns = kubelet.state.pod_netns(self.uid)
        self.veth = pod_veth_name(self.uid)
        self.ip: str | None = None
        self.holder: asyncio.subprocess.Process | None = None
        self.containers: dict[str, ContainerWorker] = {}
        self.ephemeral: dict[str, ContainerWorker] = {}
        self.start_time = now_rfc3339()
        self.sandbox_error: str | None = None
        self.created_mountpoints: list[str] = []
        self._transitions: dict[str, tuple[str, str]] = {}
        self._publish_scheduled = False
        self.stopping = False

    @property
    def holder_pid(self) -> int | None:
        return self.holder.pid if self.holder and self.holder.returncode is None else None

    def current(self) -> Object:
        found = self.kubelet.store.get(PODS, self.namespace, self.name)
        return (
            found
            if found is not None and found["metadata"]["uid"] == self.uid
            else {
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
                "spec": self.spec,
            }
        )

    def lookup(self, kind: str, name: str) -> Object | None:
        return self.kubelet.store.get(
            CONFIGMAPS if kind == "configmaps" else SECRETS, self.namespace, name
        )

    async def start(self) -> None:
        try:
            await self._create_sandbox()
        except MissingReference as error:
            self.sandbox_error = str(error)
            self.publish_status()
            # Retry once the missing configMap or secret may exist; the kubelet does the same.
            await asyncio.sleep(CONFIG_RETRY_SECONDS)
            if not self.stopping:
                await self._teardown_sandbox()
                await self.start()
            return
        except Exception as error:
            log.exception("pod %s/%s: sandbox failed", self.namespace, self.name)
            self.sandbox_error = f"failed to create pod sandbox: {error}"
            self.publish_status()
            return
        self.sandbox_error = None
        if self.stopping:
            return
        for spec in self.spec.get("containers") or []:
            worker = ContainerWorker(self, spec, ephemeral=False)
            self.containers[worker.name] = worker
            worker.start()
        self.sync(self.current())

    def sync(self, pod: Object) -> None:
        """Start ephemeral containers added since the last look."""
        if self.holder_pid is None or self.stopping:
            return
        for spec in pod["spec"].get("ephemeralContainers") or []:
            if spec["name"] not in self.ephemeral:
                worker = ContainerWorker(self, spec, ephemeral=True)
                self.ephemeral[worker.name] = worker
                worker.start()
        self.publish_status()

    async def _create_sandbox(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        mounts: list[tuple[str, str, bool]] = []
        volume_paths = {}
        for volume in self.spec.get("volumes") or []:
            volume_paths[volume["name"]] = fill_volume(
                volume, self.directory / "volumes" / volume["name"], self.lookup
            )
        for container in self.spec.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                source = volume_paths.get(mount["name"])
                if source is None:
                    continue
                if mount.get("subPath"):
                    # As the kubelet does: the entry itself, its symlinks (a ConfigMap key's
                    # `..data/KEY`) resolved inside the volume.
                    source = (source / mount["subPath"]).resolve()
                mounts.append((str(source), mount["mountPath"], bool(mount.get("readOnly"))))
        self.holder = await asyncio.create_subprocess_exec(
            "unshare",
            "--net",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            str(self.kubelet.state.pause_binary),
            "infinity",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        await self._wait_for_holder()
        self.ip = self.kubelet.addresses.allocate()
        await asyncio.to_thread(
            self.kubelet.network.add_pod, self.netns, self.veth, self.holder.pid, self.ip
        )
        (self.directory / "resolv.conf").write_text(resolv_conf(self.namespace))
        (self.directory / "hosts").write_text(hosts_file(self.current(), self.ip))
        if self.spec.get("dnsPolicy", "ClusterFirst") in (
            "ClusterFirst",
            "ClusterFirstWithHostNet",
        ):
            mounts.append((str(self.directory / "resolv.conf"), "/etc/resolv.conf", False))
        mounts.append((str(self.directory / "hosts"), "/etc/hosts", False))
        await self._mount(mounts)

    async def _wait_for_holder(self) -> None:
        assert self.holder is not None
        comm = Path(f"/proc/{self.holder.pid}/comm")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if comm.read_text().strip() == "pause":
                    return
            if self.holder.returncode is not None:
                break
            await asyncio.sleep(0.002)
        raise RuntimeError("the pod's holder process did not start")

    async def _mount(self, mounts: list[tuple[str, str, bool]]) -> None:
        hostname = self.spec.get("hostname") or self.name
        commands = [f"hostname {shlex.quote(hostname[:63])}"]
        for source, target, read_only in mounts:
            if not os.path.lexists(target):
                self._record_mountpoint(target)
                kind = "touch" if Path(source).is_file() else "mkdir -p"
                if kind == "touch":
                    commands.append(f"mkdir -p {shlex.quote(str(Path(target).parent))}")
                commands.append(f"{kind} {shlex.quote(target)}")
            elif (shared := self.kubelet.created_by_another_sandbox(target)) is not None:
                # Another sandbox's pod made it, and this pod needs it too: whichever of the
                # sandboxes goes last removes it.
                self._remember_mountpoint(shared)
            commands.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
            if read_only:
                commands.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        process = await asyncio.create_subprocess_exec(
            "nsenter",
            "-t",
            str(self.holder_pid),
            "-m",
            "-u",
            "--",
            "sh",
            "-ec",
            "; ".join(commands),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"mounting the pod's files failed: {output.decode().strip()}")

    def _record_mountpoint(self, target: str) -> None:
        """Mount points the host lacked are created on the shared filesystem: remember the
        top-most one so it is removed with the pod (and by `down`)."""
        path = Path(target)
        while not path.parent.exists():
            path = path.parent
        self._remember_mountpoint(str(path))

    def _remember_mountpoint(self, path: str) -> None:
        self.created_mountpoints.append(path)
        self.kubelet.remember_mountpoint(path)

    def publish_status(self) -> None:
        """Coalesce status writes: several changes in one loop turn become one update."""
        if not self._publish_scheduled:
            self._publish_scheduled = True
            asyncio.get_running_loop().call_soon(self._publish_now)

    def _transition(self, kind: str, value: str) -> dict[str, Any]:
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != value:
            previous = (value, now_rfc3339())
            self._transitions[kind] = previous
        return {
            "type": kind,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": previous[1],
        }

    def _phase(self) -> str:
        workers = list(self.containers.values())
        if not workers:
            return "Pending"
        if all(worker.finished for worker in workers):
            failed = any(
                worker.state.get("terminated", {}).get("exitCode", 0) != 0 for worker in workers
            )
            return "Failed" if failed else "Succeeded"
        if all(worker.has_run for worker in workers):
            return "Running"
        return "Pending"

    def _publish_now(self) -> None:
        self._publish_scheduled = False
        pod = self.kubelet.store.get(PODS, self.namespace, self.name)
        if pod is None or pod["metadata"]["uid"] != self.uid:
            return
        workers = list(self.containers.values())
        all_ready = bool(workers) and all(worker.ready for worker in workers)
        status: dict[str, Any] = {
            "phase": self._phase(),
            "conditions": [
                self._transition(
                    "PodReadyToStartContainers", "True" if self.holder_pid else "False"
                ),
                self._transition("Initialized", "True"),
                self._transition("Ready", "True" if all_ready else "False"),
                self._transition("ContainersReady", "True" if all_ready else "False"),
                self._transition("PodScheduled", "True"),
            ],
            "hostIP": str(GATEWAY_IP),
            "hostIPs": [{"ip": str(GATEWAY_IP)}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if not all_ready:
            waiting = [w.name for w in workers if not w.ready]
            for condition in status["conditions"]:
                if condition["type"] in ("Ready", "ContainersReady") and waiting:
                    condition["reason"] = "ContainersNotReady"
                    condition["message"] = f"containers with unready status: [{' '.join(waiting)}]"
        if workers:
            status["containerStatuses"] = [worker.status() for worker in workers]
        else:
            reason = "CreateContainerConfigError" if self.sandbox_error else "ContainerCreating"
            status["containerStatuses"] = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {
                        "waiting": {
                            "reason": reason,
                            **({"message": self.sandbox_error} if self.sandbox_error else {}),
                        }
                    },
                    "lastState": {},
                }
                for c in self.spec.get("containers") or []
            ]
        if self.ephemeral:
            status["ephemeralContainerStatuses"] = [
                worker.status() for worker in self.ephemeral.values()
            ]
        if pod.get("status") != status:
            pod["status"] = status
            self.kubelet.store.update(PODS, pod, expected_version=None)

    async def stop(self, grace: float) -> None:
        self.stopping = True
        workers = [*self.containers.values(), *self.ephemeral.values()]
        await asyncio.gather(*(worker.stop(grace) for worker in workers))
        await self._teardown_sandbox()
        shutil.rmtree(self.directory, ignore_errors=True)
        for mountpoint in self.created_mountpoints:
            self.kubelet.forget_mountpoint(mountpoint)

    async def _teardown_sandbox(self) -> None:
        if self.holder is not None and self.holder.returncode is None:
            self.holder.kill()
            await self.holder.wait()
        await asyncio.to_thread(self.kubelet.network.remove_pod, self.netns, self.veth)
        if self.ip:
            self.kubelet.addresses.release(self.ip)
            self.ip = None


class Kubelet:
    """Keeps the node's pods in line with the store; also the API server's NodeConnector."""

    def __init__(
        self, store: Store, state: StateDir, sockets: NamespaceSockets, node: network.NodeNetwork
    ) -> None:
        self.store = store
        self.state = state
        self.sockets = sockets
        self.network = node
        self.addresses = network.AddressPool()
        self.workers: dict[str, PodWorker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._mountpoints: list[str] = []
        store.add_listener(self._on_event)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: Event) -> None:
        if event.resource is not PODS or event.object["spec"].get("nodeName") != NODE_NAME:
            return
        pod = event.object
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if event.type == "DELETED":
            if worker is not None:
                self._spawn(self._stop(worker, 0, remove=False))
        elif pod["metadata"].get("deletionTimestamp"):
            if worker is None:
                self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            elif not worker.stopping:
                self._spawn(
                    self._stop(
                        worker,
                        float(pod["metadata"].get("deletionGracePeriodSeconds", 30)),
                        remove=True,
                    )
                )
        elif worker is None:
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            self._spawn(worker.start())
        else:
            worker.sync(pod)

    async def _stop(self, worker: PodWorker, grace: float, remove: bool) -> None:
        await worker.stop(grace)
        self.workers.pop(worker.uid, None)
        current = self.store.get(PODS, worker.namespace, worker.name)
        if remove and current is not None and current["metadata"]["uid"] == worker.uid:
            self.store.delete(PODS, worker.namespace, worker.name)

    async def shutdown(self) -> None:
        await asyncio.gather(*(worker.stop(2) for worker in list(self.workers.values())))
        self.workers.clear()

    def remember_mountpoint(self, path: str) -> None:
        self._mountpoints.append(path)
        network.record(self.state.network_file, mountpoints=sorted(set(self._mountpoints)))

    def created_by_another_sandbox(self, target: str) -> str | None:
        """The mount point another running sandbox created at or above `target`, if any."""
        for owner in owners.running(excluding=self.state):
            for recorded in recorded_mountpoints(StateDir(owner.state_dir)):
                if target == recorded or target.startswith(recorded.rstrip("/") + "/"):
                    return recorded
        return None

    def forget_mountpoint(self, path: str) -> None:
        if path in self._mountpoints:
            self._mountpoints.remove(path)
        if path not in self._mountpoints:
            remove_mountpoint(path, self.state)
        network.record(self.state.network_file, mountpoints=sorted(set(self._mountpoints)))

    def linkable_services(self, namespace: str) -> list[Object]:
        """The namespace's services and the control plane's, for the containers' variables."""
        control_plane = self.store.get(SERVICES, "default", "kubernetes")
        return [
            *([control_plane] if control_plane is not None else []),
            *self.store.list(SERVICES, namespace),
        ]

    def worker_of(self, pod: Object) -> PodWorker | None:
        return self.workers.get(pod["metadata"]["uid"])

    # NodeConnector, for the API server

    def log_path(self, pod: Object, container: str, restart: int) -> Path:
        return self.state.pod_dir(pod["metadata"]["uid"]) / "logs" / container / f"{restart}.log"

    def netns_path(self, pod: Object) -> str:
        return network.netns_path(self.state.pod_netns(pod["metadata"]["uid"]))

    async def connect(self, pod: Object, port: int) -> socket.socket:
        """A connection to 127.0.0.1:port inside the pod, as the kubelet makes for port-forward."""
        connection: socket.socket = await self.sockets.connect(
            self.netns_path(pod), "127.0.0.1", port, timeout=5
        )
        return connection


def log_tail(path: Path) -> str:
    """The end of a container's log as the kubelet takes it for a termination message:
    2048 bytes or 80 lines, whichever is less."""
    with path.open("rb") as log_file:
        log_file.seek(max(0, log_file.seek(0, os.SEEK_END) - TERMINATION_MESSAGE_BYTES))
        tail = log_file.read()
    return b"".join(tail.splitlines(keepends=True)[-TERMINATION_MESSAGE_LINES:]).decode(
        errors="replace"
    )


def _mounted_by_another_sandbox(state: StateDir, path: str) -> bool:
    """Whether a pod of another running sandbox mounts something at or under `path`: removing
    the directory would detach that pod's mount (the kernel lets rmdir take a mount point of
    another mount namespace)."""
    for owner in owners.running(excluding=state):
        for netns in network.NodeNetwork(StateDir(owner.state_dir)).pod_namespaces():
            for pid in network.namespace_pids(netns):
                try:
                    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                except OSError:
                    continue
                # Field 5 is the mount point; pods share the host's root, so paths compare.
                targets = (line.split()[4] for line in lines)
                if any(t == path or t.startswith(path.rstrip("/") + "/") for t in targets):
                    return True
    return False


def remove_mountpoint(path: str, state: StateDir) -> None:
    """Remove a mount point the sandbox created, if nothing else was put there since and no
    other sandbox's pod mounts there."""
    if _mounted_by_another_sandbox(state, path):
        return
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.is_dir():
            for directory in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
                directory.rmdir()
            target.rmdir()
        elif target.is_file() and target.stat().st_size == 0:
            target.unlink()


def recorded_mountpoints(state: StateDir) -> list[str]:
    try:
        recorded = json.loads(state.network_file.read_text())
    except FileNotFoundError:
        return []
    return list(recorded.get("mountpoints", []))
