"""Demo traffic: a steady trickle of requests to the blog, as a shared staging would see.

Every second a GET /, every fifth second a POST /posts, each on a new connection (so
mirroring and stealing see many connections, not one long one). BLOG_URL defaults to
http://blog:8080. Standard library only.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import urllib.request

BLOG_URL = os.environ.get("BLOG_URL", "http://blog:8080")
INTERVAL_SECONDS = float(os.environ.get("INTERVAL_SECONDS", "1"))
POST_EVERY = 5


def send(method: str, path: str, body: dict[str, object] | None = None) -> str:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        BLOG_URL + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return str(response.status)
    except OSError as error:
        return f"failed: {error}"


def main() -> None:
    print(f"traffic: sending requests to {BLOG_URL}", flush=True)
    for tick in itertools.count(1):
        outcome = send("GET", "/")
        line = f"GET / -> {outcome}"
        if tick % POST_EVERY == 0:
            outcome = send(
                "POST", "/posts", {"title": f"post {tick // POST_EVERY}", "body": "from traffic"}
            )
            line += f"; POST /posts -> {outcome}"
        print(line, flush=True)
        time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    main()
