"""Sees HTTP/1.x requests and responses pass on a delivered connection.

Fed the bytes going to the program and the bytes it answers, it reports one exchange per
request: method, path, the program's status and how long it took, and the raw request for
replay. The framing is the agent's own (`podside_agent.http1`, also used by steal); this only
watches, never changes a byte, and goes quiet on anything that is not HTTP/1.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from podside_agent import http1

# Requests kept whole for replay; larger ones are reported without their bytes.
MAX_RECORDED_REQUEST = 256 * 1024
_ids = itertools.count(1)


@dataclass
class Exchange:
    id: int
    started: float  # wall clock, seconds
    method: str
    path: str
    request: bytes | None  # None when too large to keep
    status: int | None = None
    duration: float | None = None  # seconds until the status line arrived


class HttpWatch:
    """One delivered connection; `on_exchange` is called when each final response starts."""

    def __init__(self, on_exchange: Callable[[Exchange], None]) -> None:
        self._on_exchange = on_exchange
        self._requests = http1.MessageReader(http1.REQUEST)
        self._responses = http1.MessageReader(http1.RESPONSE)
        self._pending: deque[tuple[Exchange, float]] = deque()
        self._recording: list[bytes] | None = None
        self._recording_for: Exchange | None = None
        self._recorded = 0
        self._broken = False

    def to_program(self, data: bytes) -> None:
        if self._broken:
            return
        self._requests.receive_data(data)
        try:
            while (event := self._requests.next_event()) is not http1.NEED_DATA:
                if event is http1.PAUSED:
                    if self._requests.switched:
                        self._broken = True  # an upgrade: no more HTTP to see
                        return
                    self._requests.start_next()  # watching only: no need to wait for answers
                elif isinstance(event, http1.Head):
                    self._request_head(event)
                elif isinstance(event, http1.Body):
                    self._record(event.data)
                elif isinstance(event, http1.End):
                    self._finish_recording()
        except http1.FramingError:
            self._broken = True

    def from_program(self, data: bytes) -> None:
        if self._broken:
            return
        self._responses.receive_data(data)
        try:
            while (event := self._responses.next_event()) is not http1.NEED_DATA:
                if event is http1.PAUSED:
                    if self._responses.switched:
                        self._broken = True
                        return
                    self._responses.start_next()
                elif isinstance(event, http1.Head):
                    self._response_head(event)
        except http1.FramingError:
            self._broken = True

    def _request_head(self, head: http1.Head) -> None:
        exchange = Exchange(
            id=next(_ids),
            started=time.time(),
            method=head.method,
            path=head.target,
            request=None,
        )
        self._pending.append((exchange, time.monotonic()))
        self._responses.expect(head.method)
        self._recording = [head.raw]
        self._recording_for = exchange
        self._recorded = len(head.raw)

    def _record(self, data: bytes) -> None:
        if self._recording is None:
            return
        self._recorded += len(data)
        if self._recorded > MAX_RECORDED_REQUEST:
            self._recording = None  # too large to keep for replay
        else:
            self._recording.append(data)

    def _finish_recording(self) -> None:
        if self._recording is not None and self._recording_for is not None:
            self._recording_for.request = b"".join(self._recording)
        self._recording = None
        self._recording_for = None

    def _response_head(self, head: http1.Head) -> None:
        if 100 <= head.status < 200 and head.status != 101:
            return  # an interim answer: the final one follows
        if not self._pending:
            return
        exchange, started = self._pending.popleft()
        exchange.status = head.status
        exchange.duration = time.monotonic() - started
        self._on_exchange(exchange)
