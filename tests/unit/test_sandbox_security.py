"""The sandbox's securityContext decisions: the pod's context under the container's, the
kubelet's runAsNonRoot refusals, containerd's capabilities and what a non-root user keeps."""

from __future__ import annotations

import pwd
from typing import Any

import pytest

from podside.sandbox.node.security import (
    DEFAULT_CAPABILITIES,
    SecurityContextRefused,
    capability_mask,
    capability_set,
    credentials,
    effective_security_context,
)


def _pod(pod_context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "ns", "uid": "u-1"},
        "spec": {"securityContext": pod_context or {}},
    }


def _container(context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "main", **({"securityContext": context} if context is not None else {})}


def test_the_default_set_is_containerds_mask() -> None:
    # The CapEff a root container shows on containerd and Docker.
    assert capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB


def test_a_root_container_has_the_default_capabilities() -> None:
    creds = credentials(_pod(), _container())
    assert (creds.uid, creds.gid, creds.groups) == (0, 0, (0,))
    assert creds.bounding == DEFAULT_CAPABILITIES
    assert not creds.no_new_privs


def test_the_pod_user_reaches_every_container() -> None:
    # What it then holds (nothing effective) is the kernel's doing: tests/sandbox shows it.
    creds = credentials(_pod({"runAsUser": 1000, "runAsGroup": 3000}), _container())
    assert (creds.uid, creds.gid) == (1000, 3000)
    assert creds.bounding == DEFAULT_CAPABILITIES


def test_added_capabilities_bound_a_non_root_user() -> None:
    context = {"capabilities": {"add": ["NET_ADMIN"]}}
    creds = credentials(_pod({"runAsUser": 1000}), _container(context))
    assert "NET_ADMIN" in creds.bounding and creds.uid == 1000


def test_the_containers_user_wins_over_the_pods() -> None:
    context = {"runAsUser": 0, "runAsNonRoot": False, "capabilities": {"add": ["NET_ADMIN"]}}
    pod = _pod({"runAsUser": 1000, "runAsNonRoot": True})
    assert effective_security_context(pod["spec"], _container(context))["runAsUser"] == 0
    creds = credentials(pod, _container(context))
    assert creds.uid == 0 and "NET_ADMIN" in creds.bounding


def test_without_a_group_the_users_passwd_entry_gives_it_else_zero() -> None:
    known = pwd.getpwall()[-1]
    assert credentials(_pod({"runAsUser": known.pw_uid}), _container()).gid == known.pw_gid
    unknown = max(entry.pw_uid for entry in pwd.getpwall()) + 12345
    assert credentials(_pod({"runAsUser": unknown}), _container()).gid == 0


def test_supplemental_groups_and_fs_group_are_added() -> None:
    pod = _pod({"runAsUser": 4242, "runAsGroup": 7, "supplementalGroups": [8, 9], "fsGroup": 10})
    assert credentials(pod, _container()).groups == (7, 8, 9, 10)


def test_run_as_non_root_refuses_the_images_root_user_with_the_kubelets_message() -> None:
    with pytest.raises(SecurityContextRefused) as refused:
        credentials(_pod({"runAsNonRoot": True}), _container())
    assert str(refused.value) == (
        'container has runAsNonRoot and image will run as root (pod: "app_ns(u-1)", container: main)'
    )


def test_run_as_non_root_refuses_an_explicit_uid_zero() -> None:
    with pytest.raises(SecurityContextRefused, match=r"^container's runAsUser breaks non-root"):
        credentials(_pod({"runAsNonRoot": True}), _container({"runAsUser": 0}))


def test_run_as_non_root_with_a_non_root_user_runs() -> None:
    assert credentials(_pod({"runAsNonRoot": True, "runAsUser": 1000}), _container()).uid == 1000


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        ({"drop": ["ALL"], "add": ["NET_RAW"]}, {"NET_RAW"}),
        ({"add": ["ALL"], "drop": ["CHOWN"]}, {"SYS_ADMIN", "NET_ADMIN"}),
        ({"add": ["CAP_SYS_PTRACE"]}, {"SYS_PTRACE", "CHOWN"}),
        ({"drop": ["NET_RAW"]}, {"CHOWN"}),
    ],
)
def test_add_and_drop_follow_containerd(capabilities: dict[str, Any], expected: set[str]) -> None:
    chosen = capability_set({"capabilities": capabilities})
    assert expected <= chosen
    for dropped in capabilities.get("drop", []):
        if dropped != "ALL":
            assert dropped not in chosen
    if capabilities.get("drop") == ["ALL"]:
        assert chosen == frozenset(expected)


def test_allow_privilege_escalation_false_sets_no_new_privs() -> None:
    creds = credentials(_pod(), _container({"allowPrivilegeEscalation": False}))
    assert creds.no_new_privs
    assert "--no-new-privs" in creds.setpriv_argv()


def test_setpriv_argv_names_user_groups_and_bounding_set() -> None:
    creds = credentials(_pod({"runAsUser": 4242, "runAsGroup": 7}), _container())
    argv = creds.setpriv_argv()
    assert argv[:4] == ["setpriv", "--reuid=4242", "--regid=7", "--groups=7"]
    assert "--bounding-set=-all,+audit_write," in argv[4]
    assert argv[-1] == "--"
