"""Pure parts of the sandbox, without a sandbox: DNS wire format, images, patches, selectors."""

from __future__ import annotations

import struct
import sys

import pytest

from podside.sandbox.api.patch import apply_patch
from podside.sandbox.api.selectors import parse_label_selector
from podside.sandbox.node import dns
from podside.sandbox.node.images import ImageUnavailable, resolve_argv


def _query(name: str, qtype: int = dns.TYPE_A) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return (
        dns.HEADER.pack(0x1234, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\x00"
        + struct.pack("!HH", qtype, dns.CLASS_IN)
    )


def _resolve(name: str) -> list[str] | None:
    return {"blog.default.svc.cluster.local": ["198.18.128.12"]}.get(name)


def test_dns_answers_a_records_for_services() -> None:
    response = dns.build_response(_query("blog.default.svc.cluster.local"), _resolve)
    query_id, flags, _, answers, _, _ = dns.HEADER.unpack_from(response)
    assert (query_id, flags & 0xF, answers) == (0x1234, dns.RCODE_NOERROR, 1)
    assert response.endswith(bytes([198, 18, 128, 12]))


def test_dns_says_nxdomain_inside_the_cluster_and_refuses_outside() -> None:
    assert (
        dns.HEADER.unpack_from(
            dns.build_response(_query("nope.default.svc.cluster.local"), _resolve)
        )[1]
        & 0xF
        == dns.RCODE_NXDOMAIN
    )
    assert (
        dns.HEADER.unpack_from(dns.build_response(_query("example.com"), _resolve))[1] & 0xF
        == dns.RCODE_REFUSED
    )


def test_dns_answers_formerr_to_garbage() -> None:
    assert (
        dns.HEADER.unpack_from(
            dns.build_response(b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0", _resolve)
        )[1]
        & 0xF
        == dns.RCODE_FORMERR
    )


def test_agent_image_runs_the_agent_with_the_target_pid() -> None:
    argv = resolve_argv(
        {"image": "ghcr.io/podside/agent:0.1.0", "args": ["--port", "4000"]}, target_pid=42
    )
    assert argv == [sys.executable, "-m", "podside_agent", "--port", "4000", "--target-pid", "42"]


def test_unknown_image_needs_a_command() -> None:
    with pytest.raises(ImageUnavailable):
        resolve_argv({"image": "nginx:1.27"})
    assert resolve_argv({"image": "nginx:1.27", "command": ["sleep"], "args": ["1"]}) == [
        "sleep",
        "1",
    ]


def test_strategic_merge_adds_ephemeral_containers_by_name() -> None:
    pod = {"spec": {"ephemeralContainers": [{"name": "a", "image": "x"}]}}
    patched = apply_patch(
        "application/strategic-merge-patch+json",
        pod,
        {"spec": {"ephemeralContainers": [{"name": "b", "image": "y"}]}},
    )
    assert [c["name"] for c in patched["spec"]["ephemeralContainers"]] == ["a", "b"]
    replaced = apply_patch(
        "application/merge-patch+json",
        pod,
        {"spec": {"ephemeralContainers": [{"name": "b", "image": "y"}]}},
    )
    assert [c["name"] for c in replaced["spec"]["ephemeralContainers"]] == ["b"]
    added = apply_patch(
        "application/json-patch+json",
        pod,
        [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": {"name": "c"}}],
    )
    assert [c["name"] for c in added["spec"]["ephemeralContainers"]] == ["a", "c"]


def test_label_selectors_equality_and_sets() -> None:
    matches = parse_label_selector("app=blog,tier in (web, api),!canary")
    assert matches({"app": "blog", "tier": "web"})
    assert not matches({"app": "blog", "tier": "db"})
    assert not matches({"app": "blog", "tier": "web", "canary": "1"})
