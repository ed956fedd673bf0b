"""Every replica of a workload: `--target deployment/web` (or a statefulset, daemonset,
replicaset, job or service) covers each ready pod behind it, not one of them.

The pod ready the longest is the primary (kubectl's choice, and the one a scale-down
removes last): the environment, outgoing traffic, DNS, files and the
hostname come from it, and losing it ends the session. Every other ready pod gets its own
agent and a session used only for incoming: its `Incoming` follows each port the primary's
follows (mirror or steal, the same filters, that pod's own probes), so the program sees one
stream of requests from all of them.

The ready pods are listed every `POLL_SECONDS` rather than watched: a list is one small
request with the right (`list pods`) the target already needed, it comes back by itself after
an API server's hiccup, where a watch needs resuming and its resource versions handled, and a
join waits for the new pod's agent (seconds) in any case. Pods that appear join; pods that go
(scaled down, deleted, not ready, their port-forward lost) leave with one line, and the rest
goes on. Importing this module does not import the Kubernetes client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from podside.errors import PodsideError
from podside.kube.agent_settings import KubeTarget
from podside.layer.incoming import Incoming
from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import steal as steal_messages

POLL_SECONDS = 2.0
UNSUBSCRIBE_SECONDS = 2.0


def changes(
    covered: Iterable[str], ready: Iterable[str], primary: str
) -> tuple[list[str], list[str]]:
    """(pods that join, pods that leave): ready pods not covered yet join, in `ready`'s order;
    covered pods no longer ready leave, sorted. The primary is in neither: it is covered by
    the session itself, and its loss ends the session."""
    covered_now = set(covered) - {primary}
    ready_now = list(dict.fromkeys(name for name in ready if name != primary))
    joining = [name for name in ready_now if name not in covered_now]
    leaving = sorted(covered_now - set(ready_now))
    return joining, leaving


class ListingOutage:
    """What to say of the pod list, polled every `POLL_SECONDS`: a failure once, not every
    2 s while the API server is away (a new reason is said again), and its end."""

    def __init__(self) -> None:
        self._reason: str | None = None

    def failed(self, reason: str) -> str | None:
        said, self._reason = self._reason, reason
        if said == reason:
            return None
        return f"cannot list the pods of the target: {reason}; the pods covered go on"

    def succeeded(self) -> str | None:
        if self._reason is None:
            return None
        self._reason = None
        return "can list the pods of the target again"


@dataclass
class Replica:
    """A pod besides the primary, its session and the Incoming fed from it."""

    target: Any  # kube.targets.Target
    session: AgentSession
    incoming: Incoming
    watch: asyncio.Task[None] | None = field(default=None)


class Replicas:
    def __init__(
        self,
        primary: AgentSession,
        primary_incoming: Incoming,
        kube: KubeTarget,
        make_incoming: Callable[[AgentSession], Incoming],
        progress: Callable[[str], None],
        steal: bool,
    ) -> None:
        """`primary`: the session to the primary pod (its `context` and `target` set);
        `make_incoming(session)`: an Incoming like the primary's, for another pod's session."""
        assert primary.target is not None and primary.context is not None
        self._primary = primary
        self._primary_incoming = primary_incoming
        self._kube = kube
        self._make_incoming = make_incoming
        self._progress = progress
        self._steal = steal
        self._replicas: dict[str, Replica] = {}
        # Pods whose agent could not join: not tried again until they leave the ready list.
        self._refused: set[str] = set()
        self._attached = False
        self._closed = False
        self._poller: asyncio.Task[None] | None = None
        primary_incoming.on_follow.append(self._follow)

    @property
    def pods(self) -> list[str]:
        """The pods covered besides the primary, by name."""
        return sorted(self._replicas)

    def _where(self, pod: str) -> str:
        return f"pod {self._primary.target.namespace}/{pod}"

    async def start(self) -> None:
        """Join every ready pod there is now, then keep joining and leaving as pods come
        and go."""
        await self._poll()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        listing = ListingOutage()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self._poll()
            except (PodsideError, OSError) as error:
                # The API server may be away for a moment; the pods covered go on meanwhile.
                line = listing.failed(
                    error.message if isinstance(error, PodsideError) else str(error)
                )
            else:
                line = listing.succeeded()
            if line is not None:
                self._progress(line)

    async def _poll(self) -> None:
        from podside.kube import targets

        loop = asyncio.get_running_loop()
        primary = self._primary.target
        ready = await loop.run_in_executor(
            None,
            lambda: targets.replica_targets(self._primary.context, primary, self._kube.container),
        )
        by_pod = {target.pod: target for target in ready}
        joining, leaving = changes([*self._replicas, *self._refused], list(by_pod), primary.pod)
        for pod in leaving:
            if pod in self._refused:
                self._refused.discard(pod)
            else:
                await self._leave(pod, "it is no longer a ready pod of the target")
        await asyncio.gather(*(self._join(by_pod[pod]) for pod in joining))

    async def _join(self, target: Any) -> None:
        from podside.kube import connect

        try:
            session = await connect.target_session(
                self._primary.context, target, self._kube, self._progress
            )
        except PodsideError as error:
            self._refused.add(target.pod)
            self._progress(f"{self._where(target.pod)} is not covered: {error.message}")
            return
        if self._closed:
            await session.close()
            return
        assert session.peer is not None
        incoming = self._make_incoming(session)
        if self._steal:
            try:
                await session.request(steal_messages.PREPARE, {})
            except (RequestFailed, ConnectionError) as error:
                reason = (
                    "its agent is older than steal"
                    if isinstance(error, RequestFailed) and error.errno == errno.ENOSYS
                    else str(error)
                )
                self._refused.add(target.pod)
                self._progress(f"{self._where(target.pod)} is not covered: {reason}")
                await session.close()
                return
        incoming.debugger_attached(self._attached)
        session.stream_handlers.append(incoming.handle_stream)
        replica = Replica(target, session, incoming)
        self._replicas[target.pod] = replica
        for remote, program in self._primary_incoming.followed.items():
            incoming.follow(remote, program)
        replica.watch = asyncio.get_running_loop().create_task(self._watch(replica))
        self._progress(f"{self._where(target.pod)} joined: its incoming requests reach the program")

    async def _watch(self, replica: Replica) -> None:
        """A pod whose session is lost, or whose ports cannot be stolen, leaves."""
        done, _ = await asyncio.wait(
            [replica.session.lost, replica.incoming.failed], return_when=asyncio.FIRST_COMPLETED
        )
        reason = (
            replica.session.describe_loss()
            if replica.session.lost in done
            else replica.incoming.failed.result()
        )
        replica.watch = None  # this task ends the replica, and must not be cancelled by it
        await self._leave(replica.target.pod, reason)

    async def _leave(self, pod: str, reason: str) -> None:
        replica = self._replicas.pop(pod, None)
        if replica is None:
            return
        self._progress(f"{self._where(pod)} left ({reason}); the session goes on")
        await self._end(replica)

    async def _end(self, replica: Replica) -> None:
        if replica.watch is not None:
            replica.watch.cancel()
        replica.incoming.close()
        if not replica.session.lost.done():
            # Steal rules are given back now, not when the agent notices the session gone.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replica.incoming.unsubscribe_all(), UNSUBSCRIBE_SECONDS)
        await replica.session.close()

    def _follow(self, remote: int, program: tuple[str, int]) -> None:
        for replica in self._replicas.values():
            replica.incoming.follow(remote, program)

    def debugger_attached(self, attached: bool) -> None:
        self._attached = attached
        for replica in self._replicas.values():
            replica.incoming.debugger_attached(attached)

    async def close(self) -> None:
        """Every replica's subscriptions given back and its session closed."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        replicas = list(self._replicas.values())
        self._replicas.clear()
        await asyncio.gather(*(self._end(replica) for replica in replicas))
