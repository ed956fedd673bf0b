"""Throughput and latency helpers for benchmarks.

blast.py serve HOST PORT          per connection: read an 8-byte count N, send N bytes;
                                  or, after b"PING", echo every 64-byte message back
blast.py download HOST PORT N     fetch N bytes, print seconds taken
blast.py pingpong HOST PORT K     K round trips of 64 bytes, print the latencies (µs) sorted
"""

import socket
import struct
import sys
import threading
import time

CHUNK = bytes(1024 * 1024)


def serve(host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=128)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=handle, args=(connection,), daemon=True).start()


def _exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def handle(connection: socket.socket) -> None:
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with connection:
        header = _exactly(connection, 8)
        if header[:4] == b"PING":
            pending = header[4:]
            while True:
                message = pending + _exactly(connection, 64 - len(pending))
                pending = b""
                connection.sendall(message)
        (size,) = struct.unpack("!Q", header)
        view = memoryview(CHUNK)
        while size:
            sent = connection.send(view[: min(size, len(CHUNK))])
            size -= sent


def download(host: str, port: int, size: int) -> None:
    connection = socket.create_connection((host, port))
    buffer = bytearray(1024 * 1024)
    started = time.perf_counter()
    connection.sendall(struct.pack("!Q", size))
    remaining = size
    while remaining:
        count = connection.recv_into(buffer)
        if not count:
            raise ConnectionError("closed early")
        remaining -= count
    print(f"{time.perf_counter() - started:.6f}")


def pingpong(host: str, port: int, rounds: int) -> None:
    connection = socket.create_connection((host, port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sendall(b"PING")
    message = bytes(64)
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        connection.sendall(message)
        _exactly(connection, 64)
        latencies.append((time.perf_counter() - started) * 1e6)
    # The first 4 bytes of the first message completed the 8-byte header: drop it.
    print(" ".join(f"{value:.1f}" for value in sorted(latencies[1:])))


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        serve(host, port)
    elif mode == "download":
        download(host, port, int(sys.argv[4]))
    else:
        pingpong(host, port, int(sys.argv[4]))
