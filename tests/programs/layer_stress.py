"""A program that keeps podside's layer busy from many threads at once, for the stress test.

Each round runs JOBS jobs at the same time, each one: resolve a pod-only name (the resolver
opens the served resolv.conf/hosts and asks the pod's nameserver through a UDP relay), connect
to it by name and make an HTTP request through a tunnel, read a pod-only file (--fs read) and
stat it. `threads` runs the jobs on a pool of threads; `asyncio` opens the connections from one
event loop (its getaddrinfo and the file reads run in the loop's executor, as wide as the
threads' pool), as an asyncio client does.

Prints `round N ok` per round, or `round N wrong: ...` for a wrong result. A watchdog thread
prints `round N hung` (before any syscall the layer stops) and where the threads wait, and
exits 3, when a round outlasts its deadline: a lost notification shows in which round.

Usage: layer_stress.py threads|asyncio ROUNDS JOBS HOST PORT EXPECTED_ADDRESS FILE EXPECTED_TEXT
"""

import asyncio
import json
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROUND_DEADLINE = 60.0
THREADS = 64

mode, rounds, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port, expected_address = sys.argv[4], int(sys.argv[5]), sys.argv[6]
pod_file, expected_text = sys.argv[7], sys.argv[8]
current = {"round": 0, "started": time.monotonic(), "done": 0}
done_lock = threading.Lock()


def watchdog() -> None:
    seen = -1
    while True:
        time.sleep(1)
        if current["round"] != seen:
            seen = current["round"]
        elif time.monotonic() - current["started"] > ROUND_DEADLINE:
            os.write(1, f"round {seen} hung: {current['done']} of {jobs} jobs done\n".encode())
            os.write(1, f"threads waiting in: {waits()}\n".encode())
            os._exit(3)


def waits() -> dict[str, int]:
    """Where this process's threads wait in the kernel (an unanswered notification shows as
    seccomp_do_user_notification)."""
    counts: dict[str, int] = {}
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/wchan") as file:
            name = file.read()
        name = "running" if name in ("", "0") else name
        counts[name] = counts.get(name, 0) + 1
    return counts


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def check_response(path: str, raw: bytes) -> str | None:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return f"{path}: {head[:60]!r}"
    answer = json.loads(body)
    if answer.get("path") != path or answer.get("server") != "backend":
        return f"{path}: {answer}"
    return None


def check_files() -> str | None:
    with open(pod_file) as file:
        text = file.read()
    if text != expected_text:
        return f"{pod_file}: {text!r}"
    if os.stat(pod_file).st_size != len(expected_text.encode()):
        return f"{pod_file}: stat size {os.stat(pod_file).st_size}"
    return None


def resolved() -> str | None:
    addresses = {info[4][0] for info in socket.getaddrinfo(host, port, socket.AF_INET)}
    return None if addresses == {expected_address} else f"resolved {addresses}"


def counted_threaded_job(round_number: int, index: int) -> str | None:
    try:
        return threaded_job(round_number, index)
    finally:
        with done_lock:
            current["done"] += 1


def threaded_job(round_number: int, index: int) -> str | None:
    path = f"/stress/{round_number}/{index}"
    failure = resolved() or check_files()
    if failure:
        return failure
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(request(path))
        pieces = []
        while piece := connection.recv(65536):
            pieces.append(piece)
    return check_response(path, b"".join(pieces))


async def asyncio_job(round_number: int, index: int) -> str | None:
    path = f"/stress/{round_number}/{index}"
    loop = asyncio.get_running_loop()
    failure = await loop.run_in_executor(None, check_files)
    if failure:
        return failure
    addresses = {info[4][0] for info in await loop.getaddrinfo(host, port, family=socket.AF_INET)}
    if addresses != {expected_address}:
        return f"resolved {addresses}"
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request(path))
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return check_response(path, raw)


async def asyncio_round(round_number: int) -> list[str | None]:
    async def counted(index: int) -> str | None:
        try:
            return await asyncio_job(round_number, index)
        finally:
            current["done"] += 1

    # As a service that resolves and reads files a lot does: a pool as wide as the threads'.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS))
    return await asyncio.gather(*(counted(index) for index in range(jobs)))


def main() -> int:
    threading.Thread(target=watchdog, daemon=True).start()
    pool = ThreadPoolExecutor(THREADS)
    for round_number in range(1, rounds + 1):
        current.update(round=round_number, started=time.monotonic(), done=0)
        if mode == "asyncio":
            results = asyncio.run(asyncio_round(round_number))
        else:
            futures = [
                pool.submit(counted_threaded_job, round_number, index) for index in range(jobs)
            ]
            results = [future.result() for future in futures]
        wrong = [result for result in results if result is not None]
        if wrong:
            print(f"round {round_number} wrong: {len(wrong)} of {jobs}: {wrong[:3]}", flush=True)
            return 1
        print(f"round {round_number} ok", flush=True)
    return 0


sys.exit(main())
