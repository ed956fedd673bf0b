"""The events JSON between `podside exec` and the editor's backend: what the reader takes."""

from __future__ import annotations

import json

from podside.events import read_event


def test_each_event_the_writer_sends_is_read_back() -> None:
    for event in (
        {"event": "progress", "message": "agent starting"},
        {"event": "state", "state": "running", "message": ""},
        {"event": "state", "state": "running"},  # message is optional
        {"event": "listening", "port": 8080},
        {"event": "held", "localPort": 8080, "port": 80, "source": "10.0.0.7:41234"},
        {"event": "traffic", "id": "1", "time": 1.5, "method": "GET", "path": "/", "status": 200,
         "duration": 0.01, "mode": "mirror", "localPort": 8080, "probe": True},
    ):  # fmt: skip
        assert read_event(json.loads(json.dumps(event))) == event


def test_lines_that_are_no_known_event_are_none() -> None:
    for value in (
        [],
        "state",
        {},
        {"event": "unknown"},
        {"event": "listening"},
        {"event": "listening", "port": "8080"},
        {"event": "listening", "port": True},  # JSON true is no port
        {"event": "state", "state": None},
        {"event": "held", "port": 80},
        {"event": "traffic", "method": "GET", "path": "/"},
        {"command": "debugger", "attached": True},
    ):
        assert read_event(value) is None, value
