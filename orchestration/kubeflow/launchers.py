"""Which `runner.py run --spec` launcher wrote a run's record, and whether it is proven dead.

Two machines (or two containers of one machine) may share a pipeline root, and may share a host
name: a process id means something only in its own PID namespace of its own boot. A run's record
names its launcher by all of it (this_launcher), and the launcher counts as dead only when that is
proven: the same machine and boot and PID namespace, and no process of that id started at that
time; or the same machine (its /etc/machine-id) booted since. Anything else (another machine,
another container, a record from before these fields) is someone else's live work, left alone.
"""

from __future__ import annotations

import os
import socket
from typing import Optional


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> Optional[int]:
    """When process pid started, in clock ticks since boot (None: no such process, or a dead one
    not yet reaped)."""
    stat = _read(f"/proc/{pid}/stat") if pid > 0 else ""
    fields = stat.rsplit(")", 1)[1].split() if stat else []
    return int(fields[19]) if fields and fields[0] != "Z" else None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def this_launcher() -> dict:
    """This process, as a run's record names its launcher."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "machine_id": _read("/etc/machine-id"),
            "boot_id": _read("/proc/sys/kernel/random/boot_id"), "pid_namespace": _pid_namespace(),
            "start_ticks": _start_ticks(os.getpid())}


def proven_dead(launcher: dict) -> bool:
    """Whether the launcher a record names has certainly ended (see the module's docstring)."""
    here = this_launcher()
    if not launcher.get("boot_id") or launcher.get("host") != here["host"]:
        return False
    if launcher["boot_id"] != here["boot_id"]:  # this machine booted since, or another machine
        return bool(here["machine_id"]) and launcher.get("machine_id") == here["machine_id"]
    if not here["pid_namespace"] or launcher.get("pid_namespace") != here["pid_namespace"]:
        return False
    return _start_ticks(int(launcher.get("pid", 0))) != launcher.get("start_ticks")
