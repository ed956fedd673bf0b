"""From a `podside` launch configuration to the concrete debug configuration of its runtime.

The templates in `launch_templates/` (package data) say how each runtime's debuggee is wrapped by
`podside exec`; this module only fills in their placeholders (see that folder's README), so
adding a runtime is adding a file there.

Two ways to debug: by default the debugger launches the wrapped debuggee (`resolve`). With
`holdUntilAttached` the backend runs the wrapped program itself, started with its runtime's
debug server on a free port of this machine, and the debugger attaches to it
(`resolve_attach`); the debugger can then come and go while the program keeps running, and
`podside exec --hold-until-attached` holds the pod's requests while none is attached.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podside import exec_values
from podside.errors import PodsideError
from podside.kube.agent_settings import PULL_POLICIES
from podside_protocol import steal as steal_messages

# Package data: an installed wheel has them too.
TEMPLATES_DIR = Path(__file__).resolve().parent / "launch_templates"

_PLACEHOLDER = re.compile(r"\{\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>\?|=[^}]*)?\}\}")
_MISSING = object()
_MODES = ("mirror", "steal", "off")


@dataclass(frozen=True)
class ResolvedLaunch:
    """What the extension needs to start the real debugger."""

    debug_configuration: dict[str, Any]
    # How to start the debug adapter when VS Code has none for the concrete type.
    adapter: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"debugConfiguration": self.debug_configuration, "adapter": self.adapter}


def load_templates(directory: Path = TEMPLATES_DIR) -> dict[str, dict[str, Any]]:
    templates = {}
    for path in sorted(directory.glob("*.json")):
        template = json.loads(path.read_text())
        templates[template["runtime"]] = template
    return templates


def podside_command() -> list[str]:
    """How to run the podside of this backend, whatever PATH the debugger has."""
    return [sys.executable, "-m", "podside"]


def debugpy_path() -> str:
    """debugpy's package folder: `python3 FOLDER --listen ...` runs a program under it."""
    import debugpy

    return str(Path(debugpy.__file__).resolve().parent)


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (the debug server takes it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def exec_argv(launch: dict[str, Any], podside: list[str]) -> list[str]:
    """The wrapper: everything before the debuggee's own argv, ending with `--`."""
    target = launch.get("target")
    if launch.get("targetless") is True and target is None:
        argv = [*podside, "exec", "--targetless"]
    elif not isinstance(target, str) or "/" not in target:
        raise PodsideError(
            'the launch configuration needs a target such as "target": "deployment/blog" '
            '(or "targetless": true)'
        )
    else:
        argv = [*podside, "exec", "--target", target]
    if launch.get("context"):
        argv += ["--context", str(launch["context"])]
    if launch.get("namespace"):
        argv += ["-n", str(launch["namespace"])]
    mode = launch.get("mode")
    if mode is not None:
        if mode not in _MODES:
            raise PodsideError(f"mode {mode!r} is not one of {', '.join(_MODES)}")
        argv += ["--mode", mode]
    argv += _http_filter_flags(launch, mode)
    argv += _field_flags(launch, TARGET_FIELDS)
    argv += _field_flags(launch, AGENT_POD_FIELDS)
    argv += _field_flags(launch, ENVIRONMENT_FIELDS)
    argv += _field_flags(launch, OUTGOING_FIELDS)
    if launch.get("holdUntilAttached"):
        argv.append("--hold-until-attached")
    for item in launch.get("execArgs", []):
        argv.append(str(item))
    return [*argv, "--"]


def _http_filter_flags(launch: dict[str, Any], mode: Any) -> list[str]:
    """The HTTP filters of a launch configuration (steal's, and mirror's) as `podside exec`
    flags, checked as exec checks its own (`exec_values`): an empty filter would take the
    whole port."""
    fields = {f: launch.get(f) for f in ("httpFilter", "pathFilter", "methodFilter")}
    given = [f for f, value in fields.items() if value is not None and value != []]
    match, ports = launch.get("filterMatch"), launch.get("filterPorts")
    if not given and match is None and ports is None:
        return []
    if mode == "off":
        field = given[0] if given else "filterMatch" if match is not None else "filterPorts"
        raise PodsideError(
            f'{field} filters what is stolen or mirrored: it needs "mode": "steal" or "mirror"'
        )
    if match is not None and match not in steal_messages.MATCHES:
        raise PodsideError(
            f"filterMatch {match!r} is not one of {', '.join(steal_messages.MATCHES)}"
        )
    if not given:
        field = "filterMatch" if match is not None else "filterPorts"
        raise PodsideError(f"{field} needs a filter (httpFilter, pathFilter or methodFilter)")
    headers, path, methods = fields.values()
    if path is not None and not isinstance(path, str):
        raise PodsideError('pathFilter is one regex (a string), e.g. "^/api/"')
    flags: list[str] = []
    for header in [headers] if isinstance(headers, str) else headers or []:
        flags += ["--http-filter", _checked("httpFilter", exec_values.http_filter, str(header))]
    if path is not None:
        flags += ["--path-filter", _checked("pathFilter", exec_values.path_filter, path)]
    if methods is not None:
        listed = methods if isinstance(methods, str) else ",".join(str(m) for m in methods)
        flags += ["--method-filter", _checked("methodFilter", exec_values.method_filter, listed)]
    if match is not None:
        flags += ["--filter-match", match]
    if ports is not None:
        if not isinstance(ports, list) or not all(type(p) is int for p in ports) or not ports:
            raise PodsideError("filterPorts is a list of the pod's ports, e.g. [8080]")
        flags += ["--filter-ports", ",".join(str(port) for port in ports)]
    return flags


# Launch configuration fields of the agent pod settings -> (exec flag, JSON shape): "string",
# "strings" (a list, one flag each), "map" (an object, one KEY=VALUE flag each), "items" (an
# object as one NAME=VALUE,... flag), "switch" (a boolean, true by default; false gives the
# flag) or "flag" (a boolean, false by default; true gives the flag).
AGENT_POD_FIELDS: dict[str, tuple[str, str]] = {
    "agentPythonImage": ("--agent-python-image", "string"),
    "agentImagePullPolicy": ("--agent-image-pull-policy", "string"),
    "imagePullSecrets": ("--image-pull-secret", "strings"),
    "targetlessNamespace": ("--targetless-namespace", "string"),
    "targetlessLabels": ("--targetless-label", "map"),
    "targetlessAnnotations": ("--targetless-annotation", "map"),
    "targetlessNodeSelector": ("--targetless-node-selector", "map"),
    "targetlessTolerations": ("--targetless-toleration", "strings"),
    "targetlessRequests": ("--targetless-requests", "items"),
    "targetlessLimits": ("--targetless-limits", "items"),
}

# Launch configuration fields of what the target covers, as AGENT_POD_FIELDS.
TARGET_FIELDS: dict[str, tuple[str, str]] = {
    "onePod": ("--one-pod", "flag"),
}

# Launch configuration fields of the program's environment, as AGENT_POD_FIELDS.
ENVIRONMENT_FIELDS: dict[str, tuple[str, str]] = {
    "envFile": ("--env-file", "string"),
    "envMap": ("--env-map", "map"),
    "unsetEnv": ("--unset-env", "strings"),
    "hostname": ("--no-hostname", "switch"),
}


def _field_texts(name: str, value: Any, shape: str) -> list[str]:
    """A field's value as the flag values it stands for, or one line saying its shape."""
    strings = isinstance(value, list) and all(isinstance(item, str) for item in value)
    mapping = isinstance(value, dict) and all(isinstance(item, str) for item in value.values())
    if shape == "string" and isinstance(value, str):
        return [value]
    if shape == "strings" and strings:
        return list(value)
    if shape in ("map", "items") and mapping:
        pairs = [f"{key}={item}" for key, item in value.items()]
        return pairs if shape == "map" else [",".join(pairs)] if pairs else []
    expected = {
        "string": "a string",
        "strings": "a list of strings",
        "map": 'an object of strings, e.g. {"team": "payments"}',
        "items": 'an object of quantities, e.g. {"cpu": "50m", "memory": "64Mi"}',
    }[shape]
    raise PodsideError(f"{name} must be {expected}")


def _field_flags(launch: dict[str, Any], fields: dict[str, tuple[str, str]]) -> list[str]:
    """`fields` of a launch configuration as `podside exec` flags, each value checked as exec
    checks its flag (`exec_values`)."""
    flags: list[str] = []
    for name, (flag, shape) in fields.items():
        value = launch.get(name)
        if value is None:
            continue
        if shape in ("switch", "flag"):
            if not isinstance(value, bool):
                raise PodsideError(f"{name} must be true or false")
            flags += [flag] if value == (shape == "flag") else []
            continue
        for text in _field_texts(name, value, shape):
            if flag == "--agent-image-pull-policy":
                if text not in PULL_POLICIES:
                    raise PodsideError(f"{name} {text!r} is not one of {', '.join(PULL_POLICIES)}")
            else:
                dest = flag[2:].replace("-", "_")
                _checked(name, functools.partial(exec_values.checked, dest), text)
            flags += [flag, text]
    return flags


# Launch configuration fields of outgoing traffic and DNS, as AGENT_POD_FIELDS.
OUTGOING_FIELDS: dict[str, tuple[str, str]] = {
    "outgoingLocal": ("--outgoing-local", "strings"),
    "outgoingRemote": ("--outgoing-remote", "strings"),
    "outgoingTcp": ("--no-outgoing-tcp", "switch"),
    "outgoingUdp": ("--no-outgoing-udp", "switch"),
    "outgoingUnix": ("--outgoing-unix", "strings"),
    "dnsLocal": ("--dns-local", "strings"),
    "dnsRemote": ("--dns-remote", "strings"),
}


def _checked(field: str, check: Callable[[str], object], text: str) -> str:
    """`text` when its check passes, else one line naming the launch configuration's field."""
    try:
        check(text)
    except exec_values.InvalidValue as error:
        raise PodsideError(f"{field} {text!r}: {error}") from None
    return text


@dataclass(frozen=True)
class AttachLaunch:
    """A program the backend runs with a debug server, and how the debugger attaches to it."""

    argv: list[str]
    debug_port: int
    resolved: ResolvedLaunch
    # Where the program runs: the template's `cwd` (delve builds there), else the launch's.
    cwd: str | None = None


def resolve_attach(
    launch: dict[str, Any],
    session_id: str,
    templates: dict[str, dict[str, Any]],
    podside: list[str] | None = None,
    debug_port: int | None = None,
) -> AttachLaunch:
    runtime = launch.get("runtime")
    template = templates.get(str(runtime))
    if template is None or "attach" not in template:
        attachable = sorted(name for name, found in templates.items() if "attach" in found)
        raise PodsideError(
            f"holdUntilAttached: runtime {runtime!r} cannot attach a debugger later; use one "
            f"of {', '.join(attachable)}"
        )
    port = debug_port or free_port()
    wrapper = exec_argv(launch, podside or podside_command())
    # The debug server's port is the debugger's, never the pod's.
    wrapper[-1:-1] = ["--ignore-port", str(port)]
    values = {
        **_values(launch, wrapper, session_id),
        "debugPort": port,
        "debugpyPath": debugpy_path(),
    }
    attach = template["attach"]
    program = _fill(attach["program"], values, where=str(runtime))
    adapter = attach.get("adapter", template.get("adapter"))
    cwd = _fill(attach["cwd"], values, where=str(runtime)) if "cwd" in attach else None
    if not isinstance(cwd, str):
        cwd = str(launch["cwd"]) if launch.get("cwd") else None
    return AttachLaunch(
        argv=[*wrapper, *(str(item) for item in program)],
        cwd=cwd,
        debug_port=port,
        resolved=ResolvedLaunch(
            debug_configuration=_fill(attach["debugConfiguration"], values, where=str(runtime)),
            adapter=None if adapter is None else _fill(adapter, values, where=str(runtime)),
        ),
    )


def _values(launch: dict[str, Any], wrapper: list[str], session_id: str) -> dict[str, Any]:
    return {
        "name": f"{launch.get('name') or 'podside'}",
        **launch,
        "exec": wrapper,
        "execProgram": wrapper[0],
        "execArgs": wrapper[1:],
        "execLine": shlex.join(wrapper),
        "sessionId": session_id,
        "backendPython": sys.executable,
        "programFolder": _program_folder(launch.get("program")),
    }


def _program_folder(program: Any) -> str | None:
    """The folder of `program`: itself unless it names a file (one that exists, or a name with
    an extension such as main.go; the path may still hold ${workspaceFolder}, which VS Code
    fills in after the backend answered). Delve builds the program there."""
    if not isinstance(program, str) or not program:
        return None
    if program.endswith("${file}"):  # VS Code's current file: its folder has a name too
        return program.removesuffix("${file}") + "${fileDirname}"
    path = Path(program)
    if path.is_file() or (path.suffix and not path.is_dir()):
        return str(path.parent)
    return program


def resolve(
    launch: dict[str, Any],
    session_id: str,
    templates: dict[str, dict[str, Any]],
    podside: list[str] | None = None,
) -> ResolvedLaunch:
    runtime = launch.get("runtime")
    if runtime not in templates:
        raise PodsideError(
            f"runtime {runtime!r} has no launch template; use one of {', '.join(sorted(templates))}"
        )
    wrapper = exec_argv(launch, podside or podside_command())
    values = _values(launch, wrapper, session_id)
    template = templates[runtime]
    configuration = _fill(template["debugConfiguration"], values, where=runtime)
    adapter = template.get("adapter")
    return ResolvedLaunch(
        debug_configuration=configuration,
        adapter=None if adapter is None else _fill(adapter, values, where=runtime),
    )


def _fill(node: Any, values: dict[str, Any], where: str) -> Any:
    if isinstance(node, dict):
        filled = {key: _fill(value, values, where) for key, value in node.items()}
        return {key: value for key, value in filled.items() if value is not _MISSING}
    if isinstance(node, list):
        items: list[Any] = []
        for element in node:
            value = _fill(element, values, where)
            if value is _MISSING:
                continue
            if isinstance(element, str) and _whole(element) and isinstance(value, list):
                items.extend(value)
            else:
                items.append(value)
        return items
    if isinstance(node, str):
        return _fill_string(node, values, where)
    return node


def _whole(text: str) -> bool:
    match = _PLACEHOLDER.fullmatch(text)
    return match is not None


def _lookup(match: re.Match[str], values: dict[str, Any], where: str) -> Any:
    name, rest = match["name"], match["rest"] or ""
    if name in values and values[name] is not None:
        return values[name]
    if rest == "?":
        return _MISSING
    if rest.startswith("="):
        default = rest[1:]
        try:
            return json.loads(default)
        except ValueError:
            return default
    raise PodsideError(f"the {where} launch configuration needs {name!r}")


def _fill_string(text: str, values: dict[str, Any], where: str) -> Any:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole is not None:
        return _lookup(whole, values, where)

    def replace(match: re.Match[str]) -> str:
        value = _lookup(match, values, where)
        if value is _MISSING:
            return ""
        return value if isinstance(value, str) else json.dumps(value)

    return _PLACEHOLDER.sub(replace, text)
