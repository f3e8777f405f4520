"""What the benches read of their processes from Linux's /proc: peak memory and CPU time."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def cpu_seconds(*pids: int) -> float:
    """User and system CPU time of these live processes and of their live descendants (a gunicorn master's
    workers), in seconds."""
    total = 0.0
    for pid in pids:
        if fields := _stat(pid):
            total += (int(fields[11]) + int(fields[12])) / _TICK
        total += cpu_seconds(*_children(pid))
    return total
