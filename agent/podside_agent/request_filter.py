"""An HTTP filter ready to judge requests: steal routes, and mirror copies, only the HTTP/1
requests whose head it matches (headers, path, method; all conditions or any one)."""

from __future__ import annotations

import re

from podside_agent import http1
from podside_protocol.http_filter import MATCH_ANY, HttpFilter


class RequestMatcher:
    def __init__(self, http_filter: HttpFilter) -> None:
        self.filter = http_filter
        self._headers = [(name.lower(), re.compile(p)) for name, p in http_filter.headers]
        self._path = re.compile(http_filter.path) if http_filter.path else None

    @property
    def whole(self) -> bool:
        """No condition: every request, and every connection whatever it speaks."""
        return self.filter.empty

    def matches(self, head: http1.Head) -> bool:
        """The filter's conditions hold for `head`: all of them, or one when it says "any"."""
        conditions = []
        if self.filter.methods:
            conditions.append(head.method.upper() in self.filter.methods)
        if self._path is not None:
            conditions.append(self._path.search(head.target) is not None)
        conditions += [
            any(pattern.search(value) for value in head.header(name))
            for name, pattern in self._headers
        ]
        if self.filter.match == MATCH_ANY:
            return any(conditions)
        return all(conditions)
