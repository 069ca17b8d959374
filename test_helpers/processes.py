"""Processes the tests watch: the training processes (training/train_process.py) a process started,
read from /proc, and whether a process or a whole process group has ended; and free loopback ports
for the workers of a multi-worker training."""

import os
import signal
import socket
import time


def free_ports(n: int) -> list:
    """n loopback ports that nothing listens on now (each bound at once, so all different)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stat(pid) -> list:
    """/proc/PID/stat's fields after the command name: state, ppid, ..."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def training_process(parent_pid: int):
    """The pid of a live training process started by parent_pid, or None."""
    return child_process(parent_pid, b"training.train_process")


def child_process(parent_pid: int, command_part: bytes):
    """The pid of a live process started by parent_pid whose command line holds command_part, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            state, ppid = _stat(pid)[:2]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if int(ppid) == parent_pid and state != "Z" and command_part in command:
            return int(pid)
    return None


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def gone(pid: int, timeout: float = 20.0) -> bool:
    """Whether pid ends within timeout seconds."""
    deadline = time.time() + timeout
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def group_gone(pgid: int, timeout: float = 10.0) -> bool:
    """True once no process of the group is left (a child outliving its killed parent is a bug);
    any left is killed, so that the test leaves nothing running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    return False
