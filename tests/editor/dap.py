"""A small Debug Adapter Protocol client for the tests: what VS Code does with an adapter that
listens on TCP (delve's `dlv dap`), reduced to requests, responses and events."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from typing import Any


class DapError(AssertionError):
    pass


class DapClient:
    def __init__(self, host: str, port: int) -> None:
        self._socket = socket.create_connection((host, port), timeout=10)
        self._socket.settimeout(None)
        self._reader = self._socket.makefile("rb")
        self._sequence = 0
        self._responses: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.output: list[str] = []
        threading.Thread(target=self._read, name="dap-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            length = None
            while True:
                line = self._reader.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                return
            message = json.loads(self._reader.read(length))
            if message.get("type") == "response":
                with self._lock:
                    waiting = self._responses.get(message["request_seq"])
                if waiting is not None:
                    waiting.put(message)
            elif message.get("type") == "event":
                if message["event"] == "output":
                    self.output.append(message["body"].get("output", ""))
                with self._lock:
                    self._events.append(message)

    def send(self, command: str, arguments: dict[str, Any] | None = None) -> queue.Queue[Any]:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            answer: queue.Queue[dict[str, Any]] = queue.Queue()
            self._responses[sequence] = answer
        message = {"seq": sequence, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        body = json.dumps(message).encode()
        self._socket.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return answer

    def request(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Send a request and wait for its response; a failed one raises with its message."""
        try:
            response = self.send(command, arguments).get(timeout=timeout)
        except queue.Empty:
            raise DapError(
                f"no answer to {command} in {timeout} s; output: {self.output}"
            ) from None
        if not response.get("success"):
            raise DapError(f"{command} failed: {response.get('message')}; output: {self.output}")
        body: dict[str, Any] = response.get("body") or {}
        return body

    def wait_event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The body of the first `name` event not waited for before."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for index, event in enumerate(self._events):
                    if event["event"] == name:
                        del self._events[index]
                        body: dict[str, Any] = event.get("body") or {}
                        return body
            time.sleep(0.05)
        raise DapError(f"no {name} event in {timeout} s; output: {self.output}")

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> DapClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
