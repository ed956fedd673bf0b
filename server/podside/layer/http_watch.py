"""Sees HTTP/1.x requests and responses pass on a delivered connection (no I/O here).

Fed the bytes going to the program and the bytes it answers, it reports one exchange per
request: method, path, the program's status and how long it took, and the raw request for
replay. It only frames messages (Content-Length, chunked, no-body cases) and gives up quietly
on anything else — it watches, it never changes a byte.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Requests kept whole for replay; larger ones are reported without their bytes.
MAX_RECORDED_REQUEST = 256 * 1024
_MAX_HEAD = 64 * 1024
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


class _Framer:
    """Splits one direction of HTTP/1 into messages: head, then a body it skips over."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._body_left = 0
        self._chunked = False
        self.broken = False

    def feed(
        self,
        data: bytes,
        on_head: Callable[[bytes], tuple[int, bool]],
        on_body: Callable[[bytes], None] | None = None,
    ) -> None:
        """`on_head(head)` returns (Content-Length, chunked) for the message just started;
        `on_body` gets the raw bytes after the head (chunk framing included)."""
        if self.broken:
            return
        self._buffer += data
        while self._buffer and not self.broken:
            if self._body_left:
                step = min(self._body_left, len(self._buffer))
                if on_body is not None:
                    on_body(bytes(self._buffer[:step]))
                del self._buffer[:step]
                self._body_left -= step
                continue
            if self._chunked:
                before = bytes(self._buffer)
                if not self._skip_chunk():
                    return
                if on_body is not None:
                    on_body(before[: len(before) - len(self._buffer)])
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    self.broken = True
                return
            head = bytes(self._buffer[: end + 4])
            del self._buffer[: end + 4]
            self._body_left, self._chunked = on_head(head)

    def _skip_chunk(self) -> bool:
        line_end = self._buffer.find(b"\r\n")
        if line_end < 0:
            return False
        try:
            size = int(self._buffer[:line_end].split(b";")[0], 16)
        except ValueError:
            self.broken = True
            return False
        if size == 0:
            trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return False
            del self._buffer[: trailer_end + 4]
            self._chunked = False
            return True
        if len(self._buffer) < line_end + 2 + size + 2:
            return False
        del self._buffer[: line_end + 2 + size + 2]
        return True


def _headers(head: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, separator, value = line.partition(b":")
        if separator:
            fields[name.strip().lower()] = value.strip()
    return lines[0].split(b" "), fields


def _body_framing(fields: dict[bytes, bytes]) -> tuple[int, bool]:
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return 0, True
    try:
        return int(fields.get(b"content-length", b"0")), False
    except ValueError:
        return 0, False


class HttpWatch:
    """One delivered connection; `on_exchange` is called when each response starts."""

    def __init__(self, on_exchange: Callable[[Exchange], None]) -> None:
        self._on_exchange = on_exchange
        self._requests = _Framer()
        self._responses = _Framer()
        self._pending: deque[tuple[Exchange, float]] = deque()
        self._recording: Exchange | None = None
        self._recorded = bytearray()
        self._record_limit = 0

    def to_program(self, data: bytes) -> None:
        self._requests.feed(data, self._request_head, self._record)

    def from_program(self, data: bytes) -> None:
        self._responses.feed(data, self._response_head)

    def _request_head(self, head: bytes) -> tuple[int, bool]:
        request_line, fields = _headers(head)
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            self._requests.broken = True
            return 0, False
        exchange = Exchange(
            id=next(_ids),
            started=time.time(),
            method=request_line[0].decode(errors="replace"),
            path=request_line[1].decode(errors="replace"),
            request=None,
        )
        self._pending.append((exchange, time.monotonic()))
        self._finish_recording()  # a chunked request before this one ended with its last chunk
        length, chunked = _body_framing(fields)
        self._recording = exchange
        self._recorded = bytearray(head)
        # Chunked bodies end when the framer says so; until then keep what fits.
        self._record_limit = len(head) + length if not chunked else MAX_RECORDED_REQUEST + 1
        if not length and not chunked:
            self._finish_recording()
        return length, chunked

    def _record(self, body: bytes) -> None:
        if self._recording is None:
            return
        self._recorded += body
        if len(self._recorded) >= self._record_limit or len(self._recorded) > MAX_RECORDED_REQUEST:
            self._finish_recording()

    def _finish_recording(self) -> None:
        if self._recording is not None and len(self._recorded) <= MAX_RECORDED_REQUEST:
            self._recording.request = bytes(self._recorded)
        self._recording = None
        self._recorded = bytearray()

    def _response_head(self, head: bytes) -> tuple[int, bool]:
        status_line, fields = _headers(head)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            self._responses.broken = True
            return 0, False
        if 100 <= status < 200:
            return 0, False  # an interim response: the final one follows
        if not self._pending:
            return _body_framing(fields)
        exchange, started = self._pending.popleft()
        if exchange is self._recording:
            self._finish_recording()
        exchange.status = status
        exchange.duration = time.monotonic() - started
        self._on_exchange(exchange)
        if exchange.method == "HEAD" or status in (204, 304):
            return 0, False
        return _body_framing(fields)
