"""The agent pod settings real clusters need: the same values from the command line, the
config file and the launch configuration, checked alike (one line, exit 2), and where each
lands in the targetless pod's spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podside.cli import _subparser, build_parser
from podside.config import apply_config
from podside.errors import PodsideError
from podside.exec_command import parse_options
from podside.kube.agent import AgentImage, targetless_pod
from podside.kube.agent_settings import AgentSettings
from podside.lsp import launch

ROOT = Path(__file__).resolve().parents[2]
ALL_FLAGS = [
    "--agent-image-pull-policy=IfNotPresent",
    "--image-pull-secret=regcred",
    "--targetless-namespace=dev",
    "--targetless-label=team=payments",
    "--targetless-annotation=sidecar.istio.io/inject=true",
    "--targetless-node-selector=kubernetes.io/os=linux",
    "--targetless-toleration=dedicated=dev:NoSchedule",
    "--targetless-toleration=spot",
    "--targetless-requests=cpu=50m,memory=64Mi",
    "--targetless-limits=memory=128Mi",
]
EXPECTED = AgentSettings(
    image_pull_policy="IfNotPresent",
    image_pull_secrets=("regcred",),
    namespace="dev",
    labels={"team": "payments"},
    annotations={"sidecar.istio.io/inject": "true"},
    node_selector={"kubernetes.io/os": "linux"},
    tolerations=(
        {"key": "dedicated", "operator": "Equal", "value": "dev", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
    ),
    requests={"cpu": "50m", "memory": "64Mi"},
    limits={"memory": "128Mi"},
)


def _settings(argv: list[str], cwd: Path) -> AgentSettings:
    parser = build_parser()
    full = ["exec", *argv, "--", "true"]
    args = apply_config(parser, _subparser(parser, "exec"), full, parser.parse_args(full), cwd=cwd)
    kube = parse_options(args).kube
    assert kube is not None
    return kube.settings


def test_the_command_line_sets_every_setting(tmp_path: Path) -> None:
    assert _settings(["--targetless", *ALL_FLAGS], tmp_path) == EXPECTED


def test_the_config_file_sets_the_same(tmp_path: Path) -> None:
    (tmp_path / ".podside").mkdir()
    (tmp_path / ".podside" / "config.json").write_text(
        json.dumps(
            {
                "agent-image-pull-policy": "IfNotPresent",
                "image-pull-secret": ["regcred"],
                "targetless-namespace": "dev",
                "targetless-label": ["team=payments"],
                "targetless-annotation": ["sidecar.istio.io/inject=true"],
                "targetless-node-selector": ["kubernetes.io/os=linux"],
                "targetless-toleration": ["dedicated=dev:NoSchedule", "spot"],
                "targetless-requests": "cpu=50m,memory=64Mi",
                "targetless-limits": "memory=128Mi",
            }
        )
    )
    assert _settings(["--targetless"], tmp_path) == EXPECTED


def test_the_launch_configuration_sets_the_same(tmp_path: Path) -> None:
    argv = launch.exec_argv(
        {
            "targetless": True,
            "agentImagePullPolicy": "IfNotPresent",
            "imagePullSecrets": ["regcred"],
            "targetlessNamespace": "dev",
            "targetlessLabels": {"team": "payments"},
            "targetlessAnnotations": {"sidecar.istio.io/inject": "true"},
            "targetlessNodeSelector": {"kubernetes.io/os": "linux"},
            "targetlessTolerations": ["dedicated=dev:NoSchedule", "spot"],
            "targetlessRequests": {"cpu": "50m", "memory": "64Mi"},
            "targetlessLimits": {"memory": "128Mi"},
        },
        ["podside"],
    )
    assert argv[:3] == ["podside", "exec", "--targetless"] and argv[-1] == "--"
    assert _settings(argv[2:-1], tmp_path) == EXPECTED


def test_the_launch_configuration_names_the_agents_python_image(tmp_path: Path) -> None:
    argv = launch.exec_argv(
        {"target": "pod/web", "agentPythonImage": "mirror.example/python:3.12-slim"}, ["p"]
    )
    parser = build_parser()
    full = ["exec", *argv[2:], "true"]
    args = apply_config(
        parser, _subparser(parser, "exec"), full, parser.parse_args(full), cwd=tmp_path
    )
    kube = parse_options(args).kube
    assert kube is not None
    assert kube.python_image == "mirror.example/python:3.12-slim"
    assert AgentImage.of(kube.image, kube.python_image).name == "mirror.example/python:3.12-slim"
    with pytest.raises(PodsideError, match=r"^agentPythonImage must be a string$"):
        launch.exec_argv({"target": "pod/web", "agentPythonImage": ["python:3.12"]}, ["p"])


def test_package_json_describes_every_launch_field() -> None:
    manifest = json.loads((ROOT / "editor-extension" / "package.json").read_text())
    attributes = manifest["contributes"]["debuggers"][0]["configurationAttributes"]["launch"]
    fields = {"targetless", *launch.AGENT_POD_FIELDS, *launch.ENVIRONMENT_FIELDS}
    assert fields <= set(attributes["properties"])


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--image-pull-secret", "Reg_Cred", "expected a Secret's name"),
        ("--targetless-namespace", "Dev", "expected a namespace's name"),
        ("--targetless-label", "team", "expected KEY=VALUE"),
        ("--targetless-label", "team=pay ments", "is not a label value"),
        ("--targetless-annotation", "bad key=x", "is not a Kubernetes key"),
        ("--targetless-toleration", "dedicated:NoRun", "effect 'NoRun' is not one of"),
        ("--targetless-requests", "gpu=1", "NAME one of cpu, memory, ephemeral-storage"),
        ("--targetless-limits", "memory=lots", "'lots' is not a quantity"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(
    flag: str, value: str, reason: str, tmp_path: Path
) -> None:
    with pytest.raises(PodsideError) as raised:
        _settings(["--targetless", f"{flag}={value}"], tmp_path)
    assert raised.value.exit_code == 2
    assert raised.value.message.startswith(f"{flag} {value!r}: ")
    assert reason in raised.value.message


def test_a_bad_launch_field_names_the_field() -> None:
    with pytest.raises(PodsideError, match=r"^targetlessLimits 'memory=lots': 'lots' is not"):
        launch.exec_argv({"targetless": True, "targetlessLimits": {"memory": "lots"}}, ["p"])
    with pytest.raises(PodsideError, match=r"^targetlessLabels must be an object of strings"):
        launch.exec_argv({"targetless": True, "targetlessLabels": ["team=payments"]}, ["p"])
    with pytest.raises(PodsideError, match=r"^agentImagePullPolicy 'Sometimes' is not one of"):
        launch.exec_argv({"targetless": True, "agentImagePullPolicy": "Sometimes"}, ["p"])


def test_targetless_settings_without_targetless_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PodsideError) as raised:
        _settings(["--target", "pod/web", "--targetless-label=team=payments"], tmp_path)
    assert raised.value.message == "--targetless-label is for the pod --targetless starts"
    assert raised.value.exit_code == 2


def test_the_schema_checks_the_values_too() -> None:
    from podside.config import schema
    from podside.schema_command import exec_parser

    properties = schema(exec_parser())["properties"]
    assert properties["agent-image-pull-policy"]["enum"] == ["Always", "IfNotPresent", "Never"]
    assert "pattern" in properties["targetless-toleration"]["items"]


def test_the_settings_land_in_the_targetless_pod() -> None:
    pod = targetless_pod(
        "podside-agent-a", AgentImage.of("img"), 20001, "t" * 43, EXPECTED, capabilities=False
    )
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert pod["metadata"]["labels"] == {
        "team": "payments",
        "app.kubernetes.io/name": "podside-agent",
    }
    # The user's annotation wins over the default; the other default stays.
    assert pod["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "true",
        "linkerd.io/inject": "disabled",
    }
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == [dict(t) for t in EXPECTED.tolerations]
    assert container["resources"] == {"requests": EXPECTED.requests, "limits": EXPECTED.limits}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["securityContext"]["runAsNonRoot"] is True
