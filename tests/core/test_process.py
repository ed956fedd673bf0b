"""Process semantics: podside's exit code is the program's, signals reach the program, and
nothing is left behind when it ends."""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.core.agent_client import agent_status
from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod, free_port, wait_for


def _start(pod: Pod, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *pod.podside_exec(),
            "--",
            *command,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_exit_code_is_the_programs(pod: Pod) -> None:
    assert podside_exec(pod, "sh", "-c", "exit 7").returncode == 7
    assert podside_exec(pod, "true").returncode == 0


def test_a_program_killed_by_a_signal_gives_128_plus_the_signal(pod: Pod) -> None:
    assert podside_exec(pod, "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_stdin_and_stdout_are_the_programs(pod: Pod) -> None:
    result = podside_exec(pod, "tr", "a-z", "A-Z", input="hello pod\n")
    assert result.stdout == "HELLO POD\n"


_SHOW_ARGV = "import sys; print(sys.argv[1:])"


def _program_argv(pod: Pod, *words: str) -> str:
    """What the program printed of its arguments, run as `podside exec OPTIONS WORDS...`."""
    result = subprocess.run(
        [*pod.podside_exec("-q"), *words], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_double_dash_after_the_command_word_is_mirrords_separator(pod: Pod) -> None:
    # mirrord's order `CMD -- ARGS`: that `--` is dropped; one the program's own is kept.
    assert _program_argv(pod, PYTHON, "--", "-c", _SHOW_ARGV, "a", "-b") == "['a', '-b']"
    assert _program_argv(pod, "--", PYTHON, "-c", _SHOW_ARGV, "--", "a") == "['--', 'a']"
    assert _program_argv(pod, PYTHON, "-c", _SHOW_ARGV, "x", "--", "a") == "['x', '--', 'a']"


def _trap_program(marker: Path, signame: str) -> list[str]:
    return [
        "bash",
        "-c",
        f"trap 'echo {signame} > {marker}; exit 0' {signame}; echo ready; "
        "while true; do sleep 0.1; done",
    ]


def test_sigterm_and_sigint_sent_to_podside_reach_the_program(pod: Pod, tmp_path: Path) -> None:
    for signum, name in ((signal.SIGTERM, "TERM"), (signal.SIGINT, "INT")):
        marker = tmp_path / f"got-{name}"
        process = _start(pod, *_trap_program(marker, name))
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        assert process.wait(15) == 0
        assert marker.read_text().strip() == name


def test_terminal_interrupt_reaches_the_program_once(pod: Pod, tmp_path: Path) -> None:
    """Ctrl-C in a terminal goes to the whole foreground process group: once, not twice."""
    marker = tmp_path / "interrupts"
    program = (
        "import signal, sys, time\n"
        f"def count(*_): open({str(marker)!r}, 'a').write('x')\n"
        "signal.signal(signal.SIGINT, count)\n"
        "print('ready', flush=True)\n"
        "time.sleep(1.5)\n"
    )
    command = [
        *pod.podside_exec(),
        "--",
        PYTHON,
        "-c",
        program,
    ]
    pid, terminal = pty.fork()  # the child gets a new session with this pty as its terminal
    if pid == 0:
        os.execv(command[0], command)
    try:
        output = b""
        while b"ready" not in output:
            output += os.read(terminal, 1024)
        os.write(terminal, b"\x03")  # the line discipline turns this into SIGINT
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    assert marker.read_text() == "x"


def test_children_left_behind_are_stopped(pod: Pod, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    result = podside_exec(
        pod, "sh", "-c", f"sleep 347 & echo $! > {pid_file}; (sleep 348 &) ; exit 0"
    )
    assert result.returncode == 0
    leftover = int(pid_file.read_text())
    wait_for(lambda: not Path(f"/proc/{leftover}").exists(), what="the background sleep to end")
    survivors = subprocess.run(["pgrep", "-f", "^sleep 34[78]$"], capture_output=True, text=True)
    assert survivors.stdout.strip() == ""


def test_nothing_is_left_on_the_agent_after_the_program_ends(pod: Pod) -> None:
    # A port of its own, and SO_REUSEADDR as real servers set it: the mirror tests before this
    # one leave TIME_WAIT connections on 8080 here, which refuse a plain bind for 60 s.
    port = free_port()
    listening = (
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('', {port})); s.listen(); time.sleep(1)"
    )
    assert podside_exec(pod, PYTHON, "-c", listening).returncode == 0

    def forgotten() -> bool:
        status = agent_status(pod)
        return not (status["clients"] or status["mirrored_ports"] or status.get("stolen_ports"))

    wait_for(
        forgotten,
        what="the agent to forget the session",
    )


def test_program_is_stopped_when_podside_is_killed_hard(pod: Pod) -> None:
    """SIGKILL cannot be forwarded, but the program must not linger under a dead layer."""
    process = _start(pod, "sleep", "300")

    def program() -> str:
        # By name: podside may have other short-lived children while it starts.
        found = subprocess.run(
            ["pgrep", "-P", str(process.pid), "-x", "sleep"], capture_output=True, text=True
        )
        return found.stdout.strip()

    wait_for(program, what="the program to start")
    child = int(program().split()[0])
    process.kill()
    process.wait(10)
    wait_for(
        lambda: not Path(f"/proc/{child}").exists() or _is_zombie(child),
        timeout=10,
        what="the program to die with podside",
    )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
    finally:
        time.sleep(0)


def test_a_signal_while_podside_connects_stops_it_before_the_program_starts(
    tmp_path: Path,
) -> None:
    """An agent that accepts but never answers keeps podside connecting; SIGTERM then ends
    podside (128 + SIGTERM), and the program never runs."""
    marker = tmp_path / "ran"
    with socket.socket() as silent_agent:
        silent_agent.bind(("127.0.0.1", 0))
        silent_agent.listen()
        port = silent_agent.getsockname()[1]
        process = subprocess.Popen(
            [
                *(PYTHON, "-m", "podside", "exec", "--agent", f"127.0.0.1:{port}"),
                *("--token", "t", "--", "touch", str(marker)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = silent_agent.accept()
        with connection:
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 128 + signal.SIGTERM
    assert not marker.exists()
