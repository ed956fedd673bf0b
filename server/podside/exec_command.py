"""`podside exec`: run a program on this machine in the context of a pod.

The order matters: the program's process is forked first (a quiet single-threaded fork, see
`layer.launcher`), then the agent is reached and asked for the pod's environment and resolver
files, the local proxies and the supervisor start (for a workload target, after the other
ready pods' sessions joined, see `replicas`), and only then is the program executed. Its exit
status becomes podside's; on the way out everything podside started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import getpass
import logging
import os
import re
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from podside import config, pod_session
from podside.environment import Mapping, merge, parse_assignments, read_env_file
from podside.errors import PodsideError
from podside.events import EventReporter
from podside.exec_values import checked_flag
from podside.kube.agent_settings import KubeTarget
from podside.layer import children, launcher, seccomp
from podside.layer.dns_names import NameBook
from podside.layer.http_watch import Exchange
from podside.layer.incoming import Incoming, MirroredConnection
from podside.layer.proxy import DnsRelaying, TcpProxy, UdpRelays
from podside.layer.remote_files import PathPolicy, RemoteFiles
from podside.layer.routing import DNS_PORT, DnsFilter, OutgoingRule, Router
from podside.layer.served_files import (
    HOSTNAME_FILES,
    HOSTS,
    NSSWITCH_CONF,
    RESOLV_CONF,
    ServedFiles,
    nameservers,
    nsswitch_for_pod,
)
from podside.layer.supervisor import Supervisor, filter_rules
from podside.layer.tunnels import TunnelRegistry, TunnelWork
from podside.pod_resolver import parse_resolv_conf
from podside.pod_session import ask, read_pod_file
from podside.replicas import Replicas
from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import environment, status
from podside_protocol import steal as steal_messages
from podside_protocol.addresses import MAX_PORT, port_from_text

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "exec",
        help="run a program here in the context of a pod",
        description="Run CMD on this machine as if it ran in the pod: its outgoing "
        "connections and DNS lookups leave from the pod, it gets the pod's environment, and "
        "connections that reach the pod on the ports it listens on are mirrored to it.",
        usage="podside exec (--target KIND/NAME | --targetless | --agent HOST:PORT) [options] "
        "-- CMD [ARGS...]",
    )
    pod_session.add_arguments(parser)
    network = parser.add_argument_group("outgoing traffic and DNS")
    network.add_argument(
        "--no-outgoing",
        action="store_true",
        help="keep the program's connections on this machine",
    )
    network.add_argument(
        "--no-outgoing-tcp",
        action="store_true",
        help="keep the program's TCP connections on this machine (UDP still leaves from the pod)",
    )
    network.add_argument(
        "--no-outgoing-udp",
        action="store_true",
        help="keep the program's UDP datagrams on this machine, but DNS (TCP still leaves "
        "from the pod)",
    )
    network.add_argument(
        "--outgoing-local",
        action="append",
        default=[],
        metavar="RULE",
        help="keep connections matching RULE on this machine (repeatable): "
        "[tcp://|udp://][NAME|IP|CIDR][:PORT], e.g. 10.0.0.0/8, localhost-db:5432, "
        "udp://:5353; a NAME matches the addresses the program's lookups of it gave",
    )
    network.add_argument(
        "--outgoing-remote",
        action="append",
        default=[],
        metavar="RULE",
        help="only connections matching one of these RULEs leave from the pod, the others "
        "stay here (repeatable; same form as --outgoing-local, which wins)",
    )
    network.add_argument(
        "--outgoing-unix",
        action="append",
        default=[],
        metavar="REGEX",
        help="connections to Unix stream sockets whose absolute path matches REGEX go to the "
        "pod's socket at that path, e.g. '^/var/run/docker.sock$' (repeatable)",
    )
    network.add_argument(
        "--no-dns", action="store_true", help="resolve names on this machine, not in the pod"
    )
    network.add_argument(
        "--dns-local",
        action="append",
        default=[],
        metavar="NAME",
        help="names matching NAME (a host name, or *.DOMAIN for every name under it) are "
        "resolved by this machine's nameserver, the rest by the pod's (repeatable)",
    )
    network.add_argument(
        "--dns-remote",
        action="append",
        default=[],
        metavar="NAME",
        help="only names matching one of these are resolved by the pod's nameserver, the rest "
        "by this machine's (repeatable; --dns-local wins)",
    )
    env = parser.add_argument_group("environment")
    env.add_argument("--no-env", action="store_true", help="do not take the pod's environment")
    env.add_argument(
        "-x",
        "--exclude-env",
        action="append",
        default=[],
        metavar="GLOB",
        help="do not take these pod variables (repeatable)",
    )
    env.add_argument(
        "--include-env",
        action="append",
        default=[],
        metavar="GLOB",
        help="take only the pod variables matching these patterns (repeatable)",
    )
    env.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable; wins over the pod's and this machine's (repeatable)",
    )
    add_pod_env_arguments(env)
    env.add_argument(
        "--env-file",
        metavar="FILE",
        help="set the variables of this dotenv file (NAME=VALUE lines); they win over the "
        "pod's and this machine's, --env wins over them",
    )
    env.add_argument(
        "--no-hostname",
        action="store_true",
        help="the program sees this machine's hostname, not the pod's (uname, gethostname, "
        "/etc/hostname)",
    )
    incoming = parser.add_argument_group("incoming traffic")
    incoming.add_argument(
        "--mode",
        choices=("mirror", "steal", "off"),
        default="mirror",
        help="mirror: copy connections that reach the pod to the program (default); "
        "steal: the program answers them instead of the pod's app (needs NET_ADMIN for the "
        "agent); off: no incoming traffic",
    )
    incoming.add_argument(
        "--http-filter",
        action="append",
        default=[],
        metavar="'NAME: REGEX'",
        help="steal (or mirror) only HTTP requests with a header NAME matching REGEX "
        "(repeatable, all must match); the others still reach the pod's app",
    )
    incoming.add_argument(
        "--path-filter",
        metavar="REGEX",
        help="steal (or mirror) only HTTP requests whose path matches REGEX",
    )
    incoming.add_argument(
        "--method-filter",
        metavar="METHOD[,METHOD...]",
        help="steal (or mirror) only HTTP requests with one of these methods, e.g. GET,POST",
    )
    incoming.add_argument(
        "--filter-ports",
        metavar="PORT[,PORT...]",
        help="the pod's ports the filters apply to (mirrord's http_filter.ports); the other "
        "ports the program listens on are stolen or mirrored whole (default: the filters apply "
        "to all)",
    )
    incoming.add_argument(
        "--filter-match",
        choices=steal_messages.MATCHES,
        help="all: a request is stolen or mirrored when every filter matches (default); any: "
        "when one "
        "of --http-filter/--path-filter/--method-filter matches (mirrord's any_of)",
    )
    incoming.add_argument(
        "--port-map",
        action="append",
        default=[],
        metavar="LOCAL:REMOTE",
        help="the program's port LOCAL receives the pod's port REMOTE (repeatable)",
    )
    incoming.add_argument(
        "--ignore-port",
        action="append",
        default=[],
        metavar="PORT",
        help="a port the program listens on that stays local: nothing from the pod reaches it, "
        "e.g. a debugger's (repeatable)",
    )
    incoming.add_argument(
        "--one-pod",
        action="store_true",
        help="a workload or service target covers only the pod ready the longest, not every ready "
        "pod behind it",
    )
    incoming.add_argument(
        "--hold-until-attached",
        action="store_true",
        help="connections for the program wait while no debugger is attached; the editor "
        "(podside lsp) attaches one and releases them",
    )
    output = parser.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    output.add_argument(
        "-v", "--verbose", action="store_true", help="also print each mirrored connection"
    )
    files_group = parser.add_argument_group("files")
    files_group.add_argument(
        "--fs",
        choices=("local", "read", "write"),
        default="local",
        help="local: every file is this machine's (default); read: the program reads the pod's "
        "files where they are remote (see --fs-remote), writing them is EROFS; write: it also "
        "writes, creates, renames and deletes them in the pod",
    )
    files_group.add_argument(
        "--no-fs", dest="fs", action="store_const", const="local", help="same as --fs local"
    )
    files_group.add_argument(
        "--fs-remote",
        action="append",
        default=[],
        metavar="REGEX",
        help="paths matching REGEX are the pod's (repeatable)",
    )
    files_group.add_argument(
        "--fs-local",
        action="append",
        default=[],
        metavar="REGEX",
        help="paths matching REGEX stay this machine's; wins over --fs-remote (repeatable)",
    )
    config.add_argument(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    parser.set_defaults(run=run)


def add_pod_env_arguments(group: Any) -> None:
    """The options that shape what is taken from the pod's environment (`podside env` too)."""
    group.add_argument(
        "--env-map",
        action="append",
        default=[],
        metavar="POD_NAME=NAME",
        help="the pod's variable POD_NAME reaches the program as NAME; POD_NAME is a regex of "
        r"the whole name and NAME may use its groups, e.g. 'STAGING_(.*)=\1' (repeatable)",
    )
    group.add_argument(
        "--unset-env",
        action="append",
        default=[],
        metavar="GLOB",
        help="remove the variables matching GLOB (any case) from the program's environment, "
        "whether this machine's, the pod's or the env file's (repeatable)",
    )


@dataclass
class ExecOptions:
    agent: tuple[str, int] | None  # --agent HOST:PORT
    token: str
    kube: KubeTarget | None
    command: list[str]
    outgoing: bool
    dns: bool
    env: bool
    exclude_env: list[str]
    include_env: list[str]
    overrides: dict[str, str]
    local_rules: list[OutgoingRule]
    mirror: bool
    remote_rules: list[OutgoingRule] = field(default_factory=list)
    outgoing_tcp: bool = True
    outgoing_udp: bool = True
    outgoing_unix: list[str] = field(default_factory=list)
    dns_filter: DnsFilter = field(default_factory=DnsFilter)
    steal: steal_messages.Subscription | None = None
    port_map: dict[int, int] = field(default_factory=dict)
    filter_ports: frozenset[int] = frozenset()
    # mirror mode: copy only the requests this matches (empty: every connection whole)
    mirror_filter: steal_messages.HttpFilter = field(default_factory=steal_messages.HttpFilter)
    quiet: bool = False
    verbose: bool = False
    fs: str = "local"
    fs_remote: list[str] = field(default_factory=list)
    fs_local: list[str] = field(default_factory=list)
    ignored_ports: frozenset[int] = frozenset()
    hold_until_attached: bool = False
    one_pod: bool = False  # a workload target covers the pod ready the longest only
    env_mappings: list[Mapping] = field(default_factory=list)
    env_file: dict[str, str] = field(default_factory=dict)
    unset_env: list[str] = field(default_factory=list)
    hostname: bool = True  # the program sees the pod's hostname (not with --targetless)


def parse_options(args: argparse.Namespace) -> ExecOptions:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    elif command[1:2] == ["--"]:
        # mirrord's order, `CMD -- ARGS`: that `--` separates, it is not the program's.
        del command[1]
    if not command:
        raise PodsideError(
            "no program to run: put it after --, e.g. podside exec --agent HOST:PORT -- python app.py",
            exit_code=2,
        )
    if args.targetless and args.outgoing_unix:
        raise PodsideError(
            "--outgoing-unix connects to the target's sockets: --targetless has none", exit_code=2
        )
    if args.one_pod and not args.target:
        raise PodsideError("--one-pod is for a workload or service --target", exit_code=2)
    if args.no_dns and (args.dns_local or args.dns_remote):
        flag = "--dns-local" if args.dns_local else "--dns-remote"
        raise PodsideError(f"{flag} chooses where names resolve: not with --no-dns", exit_code=2)
    fs_remote = [checked_flag("--fs-remote", text) for text in args.fs_remote]
    fs_local = [checked_flag("--fs-local", text) for text in args.fs_local]
    http_filter = _parse_http_filter(args)
    steal = _parse_steal(args, http_filter)
    pod = pod_session.parse(args)
    return ExecOptions(
        agent=pod.agent,
        token=pod.token,
        kube=pod.kube,
        command=command,
        outgoing=not args.no_outgoing,
        dns=not args.no_dns,
        env=not args.no_env,
        exclude_env=args.exclude_env,
        include_env=args.include_env,
        overrides=parse_assignments(args.env),
        env_mappings=[Mapping(*checked_flag("--env-map", text)) for text in args.env_map],
        env_file={} if args.env_file is None else read_env_file(args.env_file),
        unset_env=[checked_flag("--unset-env", text) for text in args.unset_env],
        hostname=not args.no_hostname and not args.targetless,
        local_rules=[checked_flag("--outgoing-local", text) for text in args.outgoing_local],
        remote_rules=[checked_flag("--outgoing-remote", text) for text in args.outgoing_remote],
        dns_filter=DnsFilter(
            tuple(checked_flag("--dns-local", text) for text in args.dns_local),
            tuple(checked_flag("--dns-remote", text) for text in args.dns_remote),
        ),
        outgoing_unix=[checked_flag("--outgoing-unix", text) for text in args.outgoing_unix],
        outgoing_tcp=not args.no_outgoing_tcp,
        outgoing_udp=not args.no_outgoing_udp,
        mirror=args.mode != "off",
        steal=steal,
        port_map=_parse_port_map(args.port_map),
        filter_ports=_parse_filter_ports(args, http_filter),
        mirror_filter=http_filter if args.mode == "mirror" else steal_messages.HttpFilter(),
        quiet=args.quiet,
        verbose=args.verbose,
        fs=args.fs,
        fs_remote=fs_remote,
        fs_local=fs_local,
        ignored_ports=frozenset(_port(text, "--ignore-port") for text in args.ignore_port),
        hold_until_attached=args.hold_until_attached,
        one_pod=args.one_pod,
    )


def _path_policy(options: ExecOptions, local_env: dict[str, str]) -> PathPolicy:
    """Remote paths per --fs-remote/--fs-local; the project, $HOME and the program stay here."""
    program = os.path.realpath(_resolve_command(options.command[0], local_env))
    prefix = os.path.dirname(os.path.dirname(program))
    roots = [os.getcwd(), local_env.get("HOME", ""), prefix]
    return PathPolicy(options.fs_remote, options.fs_local, roots)


def _parse_http_filter(args: argparse.Namespace) -> steal_messages.HttpFilter:
    """The HTTP filter of --http-filter, --path-filter, --method-filter and --filter-match, for
    steal or mirror (the empty one when none is given)."""
    filters = [
        flag
        for flag, value in (
            ("--http-filter", args.http_filter),
            ("--path-filter", args.path_filter),
            ("--method-filter", args.method_filter),
        )
        if value is not None and value != []
    ]
    if args.mode == "off" and (filters or args.filter_match is not None):
        flag = filters[0] if filters else "--filter-match"
        raise PodsideError(f"{flag} needs --mode steal or mirror", exit_code=2)
    if args.filter_match is not None and not filters:
        raise PodsideError(
            "--filter-match needs a filter (--http-filter, --path-filter or --method-filter)",
            exit_code=2,
        )
    headers = tuple(checked_flag("--http-filter", text) for text in args.http_filter)
    path = None if args.path_filter is None else checked_flag("--path-filter", args.path_filter)
    methods = (
        () if args.method_filter is None else checked_flag("--method-filter", args.method_filter)
    )
    return steal_messages.HttpFilter(
        headers, path, methods, match=args.filter_match or steal_messages.MATCH_ALL
    )


def _parse_steal(
    args: argparse.Namespace, http_filter: steal_messages.HttpFilter
) -> steal_messages.Subscription | None:
    if args.mode != "steal":
        return None
    owner = f"{getpass.getuser()}@{socket.gethostname()} (podside exec pid {os.getpid()})"
    return steal_messages.Subscription(
        port=1,  # each port the program listens on
        filter=http_filter,
        owner=owner,
    )


def _parse_filter_ports(
    args: argparse.Namespace, http_filter: steal_messages.HttpFilter
) -> frozenset[int]:
    """--filter-ports: pod ports, not refused when the program never listens on one (as
    mirrord: which ports are stolen is known only once the program listens)."""
    if args.filter_ports is None:
        return frozenset()
    if http_filter.empty:
        raise PodsideError(
            "--filter-ports needs a filter (--http-filter, --path-filter or --method-filter)",
            exit_code=2,
        )
    items = [item.strip() for item in args.filter_ports.split(",")]
    return frozenset(_port(item, "--filter-ports") for item in items)


def _port(text: str, flag: str) -> int:
    port = port_from_text(text)
    if port is None:
        raise PodsideError(f"{flag} {text!r}: expected a port (1-{MAX_PORT})", exit_code=2)
    return port


def _parse_port_map(values: list[str]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for value in values:
        local_text, separator, remote_text = value.partition(":")
        local, remote = port_from_text(local_text), port_from_text(remote_text)
        if not separator or local is None or remote is None:
            raise PodsideError(f"--port-map {value!r}: expected LOCAL:REMOTE ports", exit_code=2)
        mapping[local] = remote
    return mapping


def run(args: argparse.Namespace) -> int:
    options = parse_options(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("podside: %(message)s"))
    podside_logger = logging.getLogger("podside")
    podside_logger.addHandler(handler)
    podside_logger.setLevel(logging.DEBUG if options.verbose else logging.WARNING)
    seccomp.set_child_subreaper()
    children.block_forwarded_signals()
    rules = filter_rules(
        network=True,
        udp=options.outgoing or options.dns,
        files=options.dns or options.hostname,
        stats=options.fs != "local",
        hostname=options.hostname,
    )
    process = launcher.LayeredProcess(rules)  # forks while podside is still one thread
    signals = children.SignalForwarder()
    signals.start()
    try:
        return asyncio.run(_run_session(options, process, signals))
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        return 128 + signals.received  # stopped by a signal before the program ran
    finally:
        process.abandon()


def _say(options: ExecOptions, message: str) -> None:
    if not options.quiet:
        print(f"podside: {message}", file=sys.stderr, flush=True)


async def _run_session(
    options: ExecOptions, process: launcher.LayeredProcess, signals: children.SignalForwarder
) -> int:
    task = asyncio.current_task()
    assert task is not None
    signals.attach(task)
    local_env = dict(os.environ)
    events = await EventReporter.from_environment(local_env)  # never passed on to the program
    try:
        return await _run_with_events(options, process, events, local_env, signals)
    except PodsideError as error:
        events.state("failed", error.message)
        raise
    finally:
        events.close()


async def _run_with_events(
    options: ExecOptions,
    process: launcher.LayeredProcess,
    events: EventReporter,
    local_env: dict[str, str],
    signals: children.SignalForwarder,
) -> int:
    loop = asyncio.get_running_loop()

    def progress(message: str) -> None:
        _say(options, message)
        events.progress(message)

    _resolve_command(options.command[0], local_env)  # fail before connecting anywhere
    if options.hold_until_attached and not events.active:
        raise PodsideError(
            "--hold-until-attached needs the editor (podside lsp) to attach a debugger and "
            "release connections; run it from the editor",
            exit_code=2,
        )
    session = await pod_session.connect(
        pod_session.PodChoice(options.agent, options.token, options.kube), progress
    )
    assert session.peer is not None and session.welcome is not None

    env = dict(local_env)
    targetless = options.kube is not None and options.kube.target is None
    # The start-up line names the pod process as the agent finds it now (after an app
    # container's restart, not the one WELCOME remembered): the environment's answer says
    # whose it is, else the status does.
    target_pid: object = None
    pod_hostname: object = None
    if options.env and not targetless:
        remote_env = await ask(session, environment.GET, {}, "the pod's environment")
        target_pid = remote_env.get("pid")
        pod_hostname = remote_env.get("hostname")
        env = merge(
            env,
            remote_env.get("env", {}),
            exclude=options.exclude_env,
            include=options.include_env,
            overrides=options.overrides,
            mappings=options.env_mappings,
            from_file=options.env_file,
            unset_names=options.unset_env,
        )
    else:
        env = merge(
            env,
            {},
            exclude=[],
            include=[],
            overrides=options.overrides,
            from_file=options.env_file,
            unset_names=options.unset_env,
        )
        if not targetless:
            agent_status = await ask(session, status.STATUS, {}, "its status")
            target_pid, pod_hostname = agent_status.get("target_pid"), agent_status.get("hostname")
    hostname = None
    if options.hostname:
        if isinstance(pod_hostname, str) and pod_hostname:
            hostname = pod_hostname
        else:
            progress(
                f"{session.description} did not say the pod's hostname (an older agent, or "
                "one that cannot see it); the program sees this machine's"
            )

    remote_files = None
    if options.fs != "local":
        policy = _path_policy(options, local_env)
        remote_files = RemoteFiles(
            session.peer, loop, process.listener, policy, writable=options.fs == "write"
        )
    router = Router(
        outgoing=options.outgoing,
        tcp=options.outgoing_tcp,
        udp=options.outgoing_udp,
        dns=options.dns,
        local_rules=options.local_rules,
        remote_rules=options.remote_rules,
    )
    names = NameBook() if router.needs_names else None
    if names is not None:
        router.names = names.names_of
    served_contents: dict[str, bytes] = {}
    if options.dns:
        resolv_conf = await read_pod_file(session, RESOLV_CONF)
        hosts = await read_pod_file(session, HOSTS)
        router.pod_nameservers = nameservers(resolv_conf)
        if names is not None:
            names.learn_hosts(hosts)
            router.search = parse_resolv_conf(resolv_conf).search
        served_contents |= {
            RESOLV_CONF: resolv_conf,
            HOSTS: hosts,
            NSSWITCH_CONF: nsswitch_for_pod(_read_local(NSSWITCH_CONF)),
        }
    if hostname is not None:
        # Go's os.Hostname reads /proc/sys/kernel/hostname before it calls uname.
        served_contents |= dict.fromkeys(HOSTNAME_FILES, f"{hostname}\n".encode())
    served = ServedFiles(served_contents) if served_contents else None

    proxy = TcpProxy()
    await proxy.start()
    registry = TunnelRegistry()
    if names is not None and not options.dns:
        await _learn_rule_names_here(options, names)
    dns_relaying = DnsRelaying(
        answers=names.learn_answer if names is not None else None,
        in_pod=options.dns_filter.in_pod if options.dns_filter else None,
        here=(_this_machines_nameserver(), DNS_PORT),
    )
    udp_relays = UdpRelays(loop, session.peer, dns_relaying)
    work = TunnelWork(loop, session.peer, process.listener, proxy, registry)

    def mirrored(connection: MirroredConnection) -> None:
        if options.verbose:
            host, port = connection.source
            _say(
                options, f"mirrored a connection from {host}:{port} to port {connection.local_port}"
            )

    mode = "steal" if options.steal is not None else "mirror"

    def exchanged(exchange: Exchange, local_port: int) -> None:
        # The kubelet's health checks reach the program like any request; the editor hides them.
        remote_port = options.port_map.get(local_port, local_port)
        probe = incoming.is_probe(remote_port, exchange.method, exchange.path)
        events.traffic(exchange, local_port, mode, probe)
        if options.verbose:
            took = f" in {exchange.duration * 1000:.1f} ms" if exchange.duration else ""
            verb = "stole" if options.steal is not None else "mirrored"
            _say(options, f"{verb} {exchange.method} {exchange.path} -> {exchange.status}{took}")

    def held(connection: MirroredConnection) -> None:
        host, port = connection.source
        events.held(connection.local_port, connection.remote_port, connection.source)
        _say(options, f"holding a connection from {host}:{port} until a debugger attaches")

    def incoming_for(pod: AgentSession) -> Incoming:
        assert pod.peer is not None
        return Incoming(
            pod.peer,
            port_map=options.port_map,
            enabled=options.mirror,
            on_connection=mirrored,
            on_error=progress,
            on_exchange=exchanged if events.active or options.verbose else None,
            steal=_with_pod_probes(options.steal, pod.probes),
            ignored_ports=options.ignored_ports,
            on_listening=events.listening,
            on_held=held,
            hold_until_attached=options.hold_until_attached,
            probes=frozenset(pod.probes),
            filter_ports=options.filter_ports,
            mirror_filter=options.mirror_filter,
        )

    incoming = incoming_for(session)
    replicas = None
    if (
        options.mirror
        and not options.one_pod
        and session.target is not None
        and session.target.selector
    ):
        assert options.kube is not None
        replicas = Replicas(
            session, incoming, options.kube, incoming_for, progress, options.steal is not None
        )

    def debugger_attached(attached: bool) -> None:
        incoming.debugger_attached(attached)
        if replicas is not None:
            replicas.debugger_attached(attached)

    events.on_debugger = debugger_attached
    if options.steal is not None:
        try:
            await session.request(steal_messages.PREPARE, {})
        except RequestFailed as error:
            if error.errno == errno.ENOSYS:
                raise PodsideError(
                    f"--mode steal: {session.description} is older than steal; restart the pod "
                    "(or end that agent) so a current agent joins it"
                ) from None
            raise PodsideError(f"--mode steal: {session.description}: {error}") from None
    session.stream_handlers.append(incoming.handle_stream)
    if replicas is not None:
        try:
            await replicas.start()
        except BaseException:
            await replicas.close()  # the pods that joined before a failure or a signal
            raise
    supervisor = Supervisor(
        process.listener,
        loop,
        router=router,
        served=served,
        work=work,
        registry=registry,
        udp_relays=udp_relays,
        on_listen=incoming.program_listens,
        remote=remote_files,
        hostname=hostname,
        unix_remote=tuple(re.compile(pattern) for pattern in options.outgoing_unix),
    )
    supervisor.start()
    watcher = children.ChildWatcher(process.pid)
    try:
        path = _resolve_command(options.command[0], env)
        if not signals.forward_to(process.pid):
            raise asyncio.CancelledError  # a signal came first: the program never starts
        process.start(launcher.ExecSpec(path, options.command, env))
        process_named = f" (pod process {target_pid})" if target_pid is not None else ""
        progress(f"running in the context of {session.description}{process_named}")
        if replicas is not None:
            progress(_covered_line(session, replicas))
        events.state("running")
        waiting: list[asyncio.Future[Any]] = [
            watcher.exited,
            session.lost,
            events.closed,
            incoming.failed,
        ]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if incoming.failed in done and watcher.exited not in done:
            _say(options, f"{incoming.failed.result()}; stopping the program")
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher.exited), 10)
            events.state("failed", incoming.failed.result())
            return 1
        if events.closed in done and watcher.exited not in done:
            # The editor stopped the session: end the program as SIGTERM would.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher.exited), 10)
        if watcher.exited.done():
            code = children.exit_code(watcher.exited.result())
        elif session.lost.done():
            _say(options, f"{session.describe_loss()}; stopping the program")
            code = 1
        else:
            code = 128 + signal.SIGTERM  # stopped from the editor; the rest is killed below
        events.state("stopped")
        return code
    finally:
        await children.terminate_descendants(watcher)
        watcher.reap()
        supervisor.stop()
        work.close()
        incoming.close()
        if replicas is not None:
            await replicas.close()
        if remote_files is not None and not session.lost.done():
            await remote_files.finish()  # files the program wrote reach the pod before we leave
        if not session.lost.done():
            await incoming.unsubscribe_all()
        udp_relays.close()
        proxy.close()
        await session.close()
        watcher.close()
        if served is not None:
            served.close()
        if remote_files is not None:
            remote_files.close()


def _covered_line(session: AgentSession, replicas: Replicas) -> str:
    """Which pods' incoming requests the program gets, the primary's first."""
    target = session.target
    pods = [target.pod, *replicas.pods]
    return (
        f"incoming requests from {target.kind}/{target.name}: {len(pods)} ready pod"
        f"{'s' if len(pods) != 1 else ''} ({', '.join(pods)}); pods that come join, pods "
        "that go leave (--one-pod: the first only)"
    )


def _with_pod_probes(
    subscription: steal_messages.Subscription | None, probes: tuple[tuple[int, str], ...]
) -> steal_messages.Subscription | None:
    """The kubelet's probes of the target pod (port, path) always reach its app."""
    if subscription is None or not probes:
        return subscription
    known = tuple(steal_messages.Probe(port, path) for port, path in probes)
    return dataclasses.replace(subscription, probes=subscription.probes + known)


def _this_machines_nameserver() -> str:
    """The first nameserver of this machine's resolv.conf; glibc's default without one."""
    servers = parse_resolv_conf(_read_local(RESOLV_CONF) or b"").nameservers
    return servers[0] if servers else "127.0.0.1"


async def _learn_rule_names_here(options: ExecOptions, names: NameBook) -> None:
    """With --no-dns the program resolves names on this machine, out of podside's sight: the
    rules' names are resolved here once, at start, instead."""
    loop = asyncio.get_running_loop()
    for rule in (*options.local_rules, *options.remote_rules):
        if rule.name is None:
            continue
        try:
            found = await loop.getaddrinfo(rule.name, None, type=socket.SOCK_STREAM)
        except OSError:
            _say(options, f"outgoing rule {rule.name!r}: no address here; it matches nothing")
            continue
        names.learn(rule.name, [str(address[4][0]) for address in found])


def _read_local(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _resolve_command(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        if not os.path.exists(name):
            raise PodsideError(f"command not found: {name}", exit_code=127)
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise PodsideError(f"command not found: {name}", exit_code=127)
    return found
