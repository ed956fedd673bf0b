"""Which cluster, as whom, in which namespace: kubeconfig contexts through the official client,
and the one place where a failed API call becomes a one-line `PodsideError`."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from podside import __version__
from podside.errors import PodsideError
from podside.kube import admission, rest
from podside.kube.rest import REQUEST_TIMEOUT as REQUEST_TIMEOUT  # where callers look

DEFAULT_KUBECONFIG = "~/.kube/config"
GET_A_KUBECONFIG = (
    "start the local sandbox cluster with `sudo podside sandbox up`, or point KUBECONFIG or "
    "--kubeconfig at your cluster's kubeconfig"
)

# How a real API server words a 403 (the sandbox says the same):
# pods "x" is forbidden: User "u" cannot patch resource "pods/ephemeralcontainers" in API group
# "" in the namespace "default"
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]+)"| at the cluster scope)?'
)
_CONNECTION_PREFIX = re.compile(r"^(<[^>]*>|\w+Connection\([^)]*\)): ")


@dataclass
class KubeContext:
    """A kubeconfig context ready to call its cluster."""

    name: str
    namespace: str
    api_client: client.ApiClient
    configuration: client.Configuration


def kubeconfig_paths(kubeconfig: str | None = None) -> list[str]:
    """The kubeconfig files that exist, in order: `kubeconfig`, else $KUBECONFIG (paths joined
    by ':'), else ~/.kube/config. Read at call time, not import time, unlike the client's own
    default, so a KUBECONFIG set later in the process counts."""
    listed = kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    paths = [os.path.expanduser(path) for path in listed.split(os.pathsep) if path]
    existing = [path for path in paths if os.path.isfile(path)]
    if not existing:
        raise PodsideError(f"no kubeconfig found at {', '.join(paths)}: {GET_A_KUBECONFIG}")
    return existing


def _read_kubeconfigs(paths: list[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Contexts by name and the current context, merged as kubectl merges several files: the
    first file that names a context, or sets current-context, wins."""
    contexts: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for path in paths:
        try:
            with open(path) as file:
                loaded = yaml.safe_load(file) or {}
        except (OSError, yaml.YAMLError) as error:
            raise PodsideError(f"cannot read kubeconfig {path}: {error}") from None
        if not isinstance(loaded, dict):
            raise PodsideError(f"{path} is not a kubeconfig (expected a mapping at the top)")
        for entry in loaded.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name"):
                contexts.setdefault(str(entry["name"]), entry.get("context") or {})
        if current is None and loaded.get("current-context"):
            current = str(loaded["current-context"])
    return contexts, current


def list_contexts(kubeconfig: str | None = None) -> tuple[list[str], str | None]:
    """(context names in kubeconfig order, the current context or None)."""
    contexts, current = _read_kubeconfigs(kubeconfig_paths(kubeconfig))
    return list(contexts), current


def did_you_mean(
    name: str,
    candidates: Iterable[str],
    what: str,
    key: Callable[[str], str] = lambda candidate: candidate,
) -> str:
    """`; did you mean X?` for the candidates whose `key` is closest to `name`, else a short
    list of what exists."""
    existing = sorted(set(candidates))
    by_key: dict[str, list[str]] = {}
    for candidate in existing:
        by_key.setdefault(key(candidate), []).append(candidate)
    close = difflib.get_close_matches(name, by_key, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(c for k in close for c in by_key[k]) + "?"
    if not existing:
        return f"; there are no {what}"
    shown = ", ".join(existing[:8]) + (", ..." if len(existing) > 8 else "")
    return f"; existing {what}: {shown}"


def load_context(
    context: str | None = None, namespace: str | None = None, kubeconfig: str | None = None
) -> KubeContext:
    """The named context (default: the current one) with its credentials and TLS settings.

    Nothing is sent to the cluster yet; an unreachable API server shows on the first call.
    """
    paths = kubeconfig_paths(kubeconfig)
    contexts, current = _read_kubeconfigs(paths)
    name = context or current
    if name is None:
        raise PodsideError(
            f"the kubeconfig ({', '.join(paths)}) sets no current context: choose one with "
            f"--context{did_you_mean('', contexts, 'contexts')}"
        )
    if name not in contexts:
        raise PodsideError(
            f"context {name!r} not found in {', '.join(paths)}"
            + did_you_mean(name, contexts, "contexts")
        )
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.pathsep.join(paths),
            context=name,
            client_configuration=configuration,
        )
    except (ConfigException, OSError, ValueError) as error:
        raise PodsideError(f"cannot use context {name!r}: {error}") from None
    api_client = client.ApiClient(configuration)
    api_client.user_agent = f"podside/{__version__}"
    return KubeContext(
        name=name,
        namespace=namespace or contexts[name].get("namespace") or "default",
        api_client=api_client,
        configuration=configuration,
    )


def status_message(error: ApiException) -> str:
    """The `message` of the Status body the API server sent, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{error.status} {error.reason}"


def permission_denied(ctx: KubeContext, error: ApiException, doing: str) -> str:
    """Name the missing verb and resource, as the 403's Status gives them."""
    message = status_message(error)
    match = _FORBIDDEN.search(message)
    if not match:
        # Forbidden by something that is neither RBAC nor admission (a namespace being
        # deleted, an authorization webhook): its own words, not a guess.
        return f"the API server refused to {doing} (403 Forbidden): {message}"
    resource = match["resource"]
    if match["group"]:
        resource += f" (API group {match['group']})"
    where = f"in namespace {match['namespace']}" if match["namespace"] else "at the cluster scope"
    return (
        f"cannot {match['verb']} {resource} {where} (RBAC, user {match['user']}, context "
        f"{ctx.name}): ask your cluster admin for a Role that allows it; README.md, section "
        "Kubernetes, lists the rules podside needs"
    )


def _unreachable_reason(error: urllib3.exceptions.HTTPError) -> str:
    reason: object = getattr(error, "reason", None) or error
    # urllib3 starts with the connection object (`HTTPSConnection(host=..., port=...): `),
    # which repeats the URL the message already names.
    return _CONNECTION_PREFIX.sub("", str(reason))


@contextmanager
def api_errors(
    ctx: KubeContext, doing: str, *, advice: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Turn what the API calls inside raise into one line; `doing` completes "cannot ...",
    e.g. "list pods in namespace default". An admission refusal (Pod Security, a webhook, a
    quota) names what refused, with `advice[cause]` as what to do, else a general hint."""
    try:
        yield
    except ApiException as error:
        refusal = admission.classify(status_message(error))
        if refusal is not None:
            what_to_do = (advice or {}).get(refusal.cause) or admission.default_advice(
                refusal.cause
            )
            raise PodsideError(
                f"{refusal.by} refused to {doing}: {refusal.detail}; {what_to_do}",
                cause=refusal.cause,
            ) from None
        if error.status == 403:
            rbac = _FORBIDDEN.search(status_message(error)) is not None
            raise PodsideError(
                permission_denied(ctx, error, doing), cause=admission.RBAC if rbac else ""
            ) from None
        if error.status == 401:
            raise PodsideError(
                f"the Kubernetes API at {ctx.configuration.host} rejected the credentials of "
                f"context {ctx.name} (401 Unauthorized): log in again or refresh the kubeconfig"
            ) from None
        raise PodsideError(f"cannot {doing}: {status_message(error)}") from None
    except urllib3.exceptions.HTTPError as error:
        raise PodsideError(
            f"cannot reach the Kubernetes API at {ctx.configuration.host} (context {ctx.name}): "
            f"{_unreachable_reason(error)}"
        ) from None
    except ConfigException as error:
        # Credentials are refreshed lazily (exec plugins, auth providers) during a call.
        raise PodsideError(f"cannot authenticate with context {ctx.name}: {error}") from None
    except ValueError as error:
        # The client validates every answer against its models (pydantic), so an object a
        # server of another version shapes differently fails here rather than in our code.
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PodsideError(
            f"cannot {doing}: the API server at {ctx.configuration.host} answered with an "
            f"object the Kubernetes client cannot read ({first_line})"
        ) from None


def list_namespaces(ctx: KubeContext) -> list[str]:
    """Names of the cluster's namespaces, sorted."""
    with api_errors(ctx, "list namespaces"):
        namespaces = rest.list_items(ctx, "namespaces", None)
    return sorted(item.metadata.name for item in namespaces if item.metadata and item.metadata.name)
