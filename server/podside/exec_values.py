"""Checks of `podside exec` values that may come from several places: the command line, the
config file (`podside.config`) and the editor's launch configuration (`podside.lsp.launch`).

Each check takes the value as the user wrote it and returns it parsed, or raises
`InvalidValue` with what is wrong in a few words; the caller says where the value came from
(`--path-filter ''`, `FILE: key 'path-filter'`, `pathFilter`). All run before anything is
asked of the agent or the cluster. The rules of a steal filter, and of a regex, are the
protocol's (`podside_protocol.steal`), so the agent refuses the same filters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podside.errors import PodsideError
from podside.layer import routing
from podside_protocol import steal


class InvalidValue(ValueError):
    """A value that would not do what its user means; the message says why."""


def http_filter(text: str) -> tuple[str, str]:
    """`--http-filter 'Name: REGEX'` -> (name, regex)."""
    name, separator, pattern = text.partition(":")
    if not separator:
        raise InvalidValue("expected 'Header-Name: REGEX'")
    name, pattern = name.strip(), pattern.strip()
    _protocol_check(steal.check_header_filter, name, pattern)
    return name, pattern


def path_filter(text: str) -> str:
    """`--path-filter REGEX`."""
    _protocol_check(steal.check_path_filter, text)
    return text


def method_filter(text: str) -> tuple[str, ...]:
    """`--method-filter GET,POST` -> ("GET", "POST"); every item must be a method."""
    methods = tuple(method.strip().upper() for method in text.split(","))
    _protocol_check(steal.check_method_filter, methods)
    return methods


def _protocol_check(check: Callable[..., None], *values: Any) -> None:
    try:
        check(*values)
    except steal.InvalidFilter as error:
        raise InvalidValue(str(error)) from None


def outgoing_rule(text: str) -> routing.OutgoingRule:
    """`--outgoing-local` / `--outgoing-remote [tcp://|udp://][NAME|IP|CIDR][:PORT]`."""
    try:
        return routing.parse_outgoing_rule(text)
    except routing.InvalidRule as error:
        raise InvalidValue(str(error)) from None


def dns_pattern(text: str) -> str:
    """`--dns-local` / `--dns-remote NAME|*.DOMAIN`."""
    try:
        return routing.parse_dns_pattern(text)
    except routing.InvalidRule as error:
        raise InvalidValue(str(error)) from None


def path_regex(text: str) -> str:
    """`--fs-remote` / `--fs-local REGEX`, searched in absolute paths."""
    _protocol_check(steal.check_regex, text, "path")
    return text


def _glob(text: str) -> str:
    """`--unset-env GLOB`: an empty one would match no name, which is never what is meant."""
    if not text:
        raise InvalidValue("expected a name or a glob")
    return text


def agent_timeout(value: float) -> float:
    """`--agent-timeout SECONDS`: a real wait, neither none nor forever."""
    if not math.isfinite(value) or value <= 0:
        raise InvalidValue("expected a number of seconds above 0")
    return value


# Kubernetes' own rules for names (apimachinery's validation): a DNS-1123 subdomain (secret
# names), a DNS-1123 label (namespaces), a qualified name (label and annotation keys, with an
# optional subdomain prefix) and a label value.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_QUALIFIED = rf"({_SUBDOMAIN}/)?{_NAME}"
_QUANTITY = r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?"
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def secret_name(text: str) -> str:
    """`--image-pull-secret NAME`: a Secret's name."""
    if not _matches(_SUBDOMAIN, text) or len(text) > 253:
        raise InvalidValue("expected a Secret's name (lowercase letters, digits, '-' and '.')")
    return text


def namespace_name(text: str) -> str:
    """`--targetless-namespace NAME`."""
    if not _matches(_DNS_LABEL, text) or len(text) > 63:
        raise InvalidValue("expected a namespace's name (lowercase letters, digits and '-')")
    return text


def _qualified_key(key: str) -> None:
    name = key.rpartition("/")[2]
    if not _matches(_QUALIFIED, key) or len(name) > 63 or len(key) - len(name) > 254:
        raise InvalidValue(
            f"{key!r} is not a Kubernetes key ([PREFIX/]NAME: letters, digits, '-', '_', '.')"
        )


def label(text: str) -> tuple[str, str]:
    """`--targetless-label KEY=VALUE` (and node selectors): a label's key and value."""
    key, separator, value = text.partition("=")
    if not separator:
        raise InvalidValue("expected KEY=VALUE")
    _qualified_key(key)
    if value and (not _matches(_NAME, value) or len(value) > 63):
        raise InvalidValue(
            f"{value!r} is not a label value (at most 63 letters, digits, '-', '_', '.')"
        )
    return key, value


def annotation(text: str) -> tuple[str, str]:
    """`--targetless-annotation KEY=VALUE`: any value, a label's key."""
    key, separator, value = text.partition("=")
    if not separator:
        raise InvalidValue("expected KEY=VALUE")
    _qualified_key(key)
    return key, value


def toleration(text: str) -> dict[str, str]:
    """`--targetless-toleration KEY[=VALUE][:EFFECT]` as kubectl writes taints: with a value
    the taint's value must be equal, without one any value does; no effect tolerates all."""
    rest, _, effect = text.rpartition(":") if ":" in text else (text, "", "")
    key, separator, value = rest.partition("=")
    _qualified_key(key)
    if effect and effect not in TOLERATION_EFFECTS:
        raise InvalidValue(f"effect {effect!r} is not one of {', '.join(TOLERATION_EFFECTS)}")
    found = {"key": key, "operator": "Equal" if separator else "Exists"}
    if separator:
        found["value"] = value
    if effect:
        found["effect"] = effect
    return found


def resource_list(text: str) -> dict[str, str]:
    """`--targetless-requests cpu=100m,memory=64Mi` (and limits)."""
    resources: dict[str, str] = {}
    for item in text.split(","):
        name, separator, quantity = (part.strip() for part in item.partition("="))
        if not separator or name not in RESOURCE_NAMES:
            raise InvalidValue(
                f"expected NAME=QUANTITY items, NAME one of {', '.join(RESOURCE_NAMES)}"
            )
        if not _matches(_QUANTITY, quantity):
            raise InvalidValue(f"{quantity!r} is not a quantity (e.g. 100m, 0.5, 64Mi, 1G)")
        resources[name] = quantity
    return resources


def env_map(text: str) -> tuple[re.Pattern[str], str]:
    """`--env-map POD_NAME=NAME`: a regex of the pod variable's whole name, and its new name."""
    pattern, separator, name = text.rpartition("=")
    if not separator or not pattern or not name:
        raise InvalidValue("expected POD_NAME=NAME")
    try:
        return re.compile(pattern), name
    except re.error as error:
        raise InvalidValue(f"POD_NAME is not a regex ({error})") from None


@dataclass(frozen=True)
class Check:
    function: Callable[[Any], Any]
    schema: dict[str, Any]  # what the config file's JSON Schema can say of it


_TOKEN = steal.TOKEN_PATTERN  # names and methods as the protocol checks them

# By the exec option's argparse dest; for repeatable options, each item is checked.
CHECKS: dict[str, Check] = {
    "http_filter": Check(http_filter, {"pattern": rf"^\s*{_TOKEN}\s*:\s*\S"}),
    "path_filter": Check(path_filter, {"minLength": 1}),
    "method_filter": Check(method_filter, {"pattern": rf"^\s*{_TOKEN}\s*(,\s*{_TOKEN}\s*)*$"}),
    "env_map": Check(env_map, {"pattern": "^.+=[^=]+$"}),
    "unset_env": Check(_glob, {"minLength": 1}),
    "outgoing_local": Check(outgoing_rule, {"minLength": 1}),
    "outgoing_remote": Check(outgoing_rule, {"minLength": 1}),
    "dns_local": Check(dns_pattern, {"minLength": 1}),
    "dns_remote": Check(dns_pattern, {"minLength": 1}),
    "outgoing_unix": Check(path_regex, {"minLength": 1}),
    "fs_remote": Check(path_regex, {"minLength": 1}),
    "fs_local": Check(path_regex, {"minLength": 1}),
    "agent_timeout": Check(agent_timeout, {"exclusiveMinimum": 0}),
    "image_pull_secret": Check(secret_name, {"pattern": rf"^{_SUBDOMAIN}$"}),
    "targetless_namespace": Check(namespace_name, {"pattern": rf"^{_DNS_LABEL}$"}),
    "targetless_label": Check(label, {"pattern": rf"^{_QUALIFIED}=({_NAME})?$"}),
    "targetless_annotation": Check(annotation, {"pattern": rf"^{_QUALIFIED}="}),
    "targetless_node_selector": Check(label, {"pattern": rf"^{_QUALIFIED}=({_NAME})?$"}),
    "targetless_toleration": Check(
        toleration,
        {"pattern": rf"^{_QUALIFIED}(=[^:]*)?(:({'|'.join(TOLERATION_EFFECTS)}))?$"},
    ),
    "targetless_requests": Check(resource_list, {"minLength": 1}),
    "targetless_limits": Check(resource_list, {"minLength": 1}),
}


def checked(dest: str, value: Any) -> Any:
    """`value` of the option `dest`, parsed by its check (unchanged when it has none)."""
    check = CHECKS.get(dest)
    return value if check is None else check.function(value)


def checked_flag(flag: str, value: Any) -> Any:
    """`value` of the command-line `flag` through its check, or one line saying what is wrong."""
    try:
        return checked(flag[2:].replace("-", "_"), value)
    except InvalidValue as error:
        shown = repr(value) if isinstance(value, str) else f"{value:g}"
        raise PodsideError(f"{flag} {shown}: {error}", exit_code=2) from None
