"""--fs on the sandbox, through the Kubernetes path (`podside exec --target`): a pod's real
ConfigMap and Secret volumes are read under --fs read and absent under --fs local; under
--fs write a file written to its emptyDir is read back by a later session, and the read-only
ConfigMap volume answers EROFS."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from tests.files.probe_prelude import PRELUDE
from tests.kube.conftest import api_client, core, kubeconfig, namespace  # noqa: F401
from tests.kube.test_exec_target import exec_target
from tests.sandbox.conftest import run_pod
from tests.topology import PYTHON, wait_for


def mounts(namespace: str) -> tuple[str, str, str]:  # noqa: F811
    """Where the pod mounts its ConfigMap, Secret and emptyDir: a folder per test, as the
    sandbox makes (empty) mount points on this machine's file system too."""
    base = f"/podside-kube-files-{namespace}"
    return f"{base}/config", f"{base}/secret", f"{base}/data"


PROBE = PRELUDE + textwrap.dedent(
    """
    for name, path in json.loads(sys.argv[1]).items():
        attempt(name, lambda: read(path))
    print(json.dumps(result))
    """
)


def _pod_with_volumes(core: Any, namespace: str) -> str:  # noqa: F811
    config_mount, secret_mount, data_mount = mounts(namespace)
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "app-config"},
            "data": {"app.json": '{"feature": "on"}\n', "mode": "staging"},
        },
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "app-secret"}, "stringData": {"token": "s3cret"}}
    )
    run_pod(
        core,
        namespace,
        "configured",
        ["sleep", "600"],
        volumes=[
            {"name": "config", "configMap": {"name": "app-config"}},
            {"name": "secret", "secret": {"secretName": "app-secret"}},
            {"name": "data", "emptyDir": {}},
        ],
        container={
            "volumeMounts": [
                {"name": "config", "mountPath": config_mount, "readOnly": True},
                {"name": "secret", "mountPath": secret_mount, "readOnly": True},
                {"name": "data", "mountPath": data_mount},
            ]
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("configured", namespace).status.phase == "Running",
        timeout=60,
        what="the pod to run",
    )
    return "pod/configured"


def _read(namespace: str, target: str, paths: dict[str, str], *options: str) -> dict[str, str]:  # noqa: F811
    result = exec_target(
        target, PYTHON, "-c", PROBE, json.dumps(paths), options=("-q", "-n", namespace, *options)
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_configmap_and_secret_volumes_are_read_under_fs_read_only(
    sandbox: Any,
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    target = _pod_with_volumes(core, namespace)
    config_mount, secret_mount, _ = mounts(namespace)
    paths = {
        "config": f"{config_mount}/app.json",
        "mode": f"{config_mount}/mode",
        "secret": f"{secret_mount}/token",
    }
    assert _read(namespace, target, paths, "--fs", "read") == {
        "config": '{"feature": "on"}\n',
        "mode": "staging",
        "secret": "s3cret",
    }
    absent = dict.fromkeys(paths, "ENOENT")
    assert _read(namespace, target, paths, "--fs", "local") == absent
    assert _read(namespace, target, paths) == absent  # local is the default


def test_fs_write_reaches_the_pods_volume_and_not_its_configmap(
    sandbox: Any,
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    target = _pod_with_volumes(core, namespace)
    config_mount, _, data_mount = mounts(namespace)
    # The sandbox's empty mount point exists here too: --fs-remote says whose it is.
    remote = ("--fs-remote", f"^{os.path.dirname(data_mount)}/")
    script = (
        f"echo written-from-here > {data_mount}/note.txt && "
        f"if echo x > {config_mount}/mode; then echo wrote-configmap; fi"
    )
    result = exec_target(
        target, "sh", "-c", script, options=("-q", "-n", namespace, "--fs", "write", *remote)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "Read-only file system" in result.stderr
    seen = _read(
        namespace,
        target,
        {"note": f"{data_mount}/note.txt", "mode": f"{config_mount}/mode"},
        "--fs",
        "read",
        *remote,
    )
    assert seen == {"note": "written-from-here\n", "mode": "staging"}


def test_configmap_keys_are_symlinks_that_readlink_realpath_and_cp_follow(
    sandbox: Any,
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A ConfigMap volume is the kubelet's atomic-writer layout: each key a symlink through
    `..data` to a timestamped folder. The program sees the pod's symlinks as symlinks."""
    target = _pod_with_volumes(core, namespace)
    config_mount, _, _ = mounts(namespace)
    copy = tmp_path / "copy"
    script = textwrap.dedent(
        f"""
        import json, os, subprocess
        key = {config_mount + "/app.json"!r}
        seen = {{"link": os.readlink(key), "real": os.path.realpath(key)}}
        seen["is_link"] = os.path.islink(key)
        subprocess.run(["cp", "-r", {config_mount!r}, {str(copy)!r}], check=True)
        seen["copied"] = open({str(copy / "app.json")!r}).read()
        seen["copied_link"] = os.readlink({str(copy / "app.json")!r})
        print(json.dumps(seen))
        """
    )
    # The sandbox's empty mount point exists here too: --fs-remote says whose it is.
    remote = ("--fs-remote", f"^{os.path.dirname(config_mount)}/")
    result = exec_target(
        target, PYTHON, "-c", script, options=("-q", "-n", namespace, "--fs", "read", *remote)
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["link"], seen["is_link"]) == ("..data/app.json", True)
    assert re.fullmatch(
        rf"{re.escape(config_mount)}/\.\.\d{{4}}(_\d\d){{5}}\.\d+/app\.json", seen["real"]
    )
    assert (seen["copied"], seen["copied_link"]) == ('{"feature": "on"}\n', "..data/app.json")
