"""CPU time and memory of processes, read from ``/proc`` (Linux only), and this machine's facts.

Shared by the demo (what each transport cost its server and proxy), the
benchmarks (``bench/``) and the load tests; it needs nothing beyond the
standard library.

A :class:`TreeSample` holds, for a process and every process below it, the
CPU time it has used (user and system, ``/proc/PID/stat``, its own and that
of the children it has waited for), its resident set now (``VmRSS``) and at
its peak (``VmHWM``, ``/proc/PID/status``). Writing ``5`` to
``/proc/PID/clear_refs`` resets the peak to the current resident set, so a
peak read later is the peak since then. A process that has exited but not
yet been waited for (a zombie) still has its final CPU times in
``/proc/PID/stat``: :func:`final_sample` reads them. Where there is no ``/proc``
(macOS, Windows), :func:`sample_tree` returns None and the demo reports no
process figures.

:func:`cpu_seconds`, :func:`resident_set` and :func:`descendants_cpu_seconds`
read one figure of a live process, for sampling in a loop; they raise
:class:`OSError` where the process is gone.

:func:`machine` names the machine the figures were measured on, and
:func:`raise_open_file_limit` lets a process that holds many connections open
as many files as it may.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
#: Seconds of CPU time per clock tick of ``/proc/PID/stat``.
TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
#: ``/proc/PID/stat`` fields, numbered from 1: state is 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
_STATE, _PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 3, 4, 14, 15, 16, 17


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process at one moment: CPU seconds used by it and by the children it has waited
    for (``reaped_cpu_seconds``), resident set bytes now and at its peak."""

    pid: int
    name: str
    own_cpu_seconds: float
    reaped_cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int

    @property
    def cpu_seconds(self) -> float:
        return self.own_cpu_seconds + self.reaped_cpu_seconds


@dataclass(frozen=True, slots=True)
class TreeSample:
    """A process and the processes below it, at one moment."""

    at: float
    processes: tuple[ProcessSample, ...]

    @property
    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.processes)

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes for p in self.processes)

    @property
    def peak_rss_bytes(self) -> int:
        """The sum of each process's own peak (they need not have peaked at the same moment)."""
        return sum(p.peak_rss_bytes for p in self.processes)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.processes)

    def cpu_seconds_since(self, earlier: TreeSample) -> dict[str, float]:
        """CPU seconds each process used since ``earlier``, by name (a process that
        started since then counts from its start)."""
        before = {p.pid: p.cpu_seconds for p in earlier.processes}
        used: dict[str, float] = {}
        for process in self.processes:
            used[process.name] = used.get(process.name, 0.0) + max(
                0.0, process.cpu_seconds - before.get(process.pid, 0.0)
            )
        return used


def available() -> bool:
    """Whether this system has a Linux-style ``/proc``."""
    return (PROC / "self" / "stat").exists() and (PROC / "self" / "status").exists()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    head, _, rest = text.rpartition(")")
    number, _, name = head.partition(" (")
    if not name:
        return None
    return ["", number, name, *rest.split()]  # numbered as proc(5) numbers them, from 1


def _status_kib(pid: int, *keys: str) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(PROC / str(pid) / "status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in keys:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def _command_name(pid: int) -> str:
    try:
        arguments = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in arguments if a]
    # "python -m package.module ..." is named by its module, anything else by its program.
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    return Path(words[0]).name if words else "?"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``: from ``/proc/PID/task/TID/children`` (Linux 3.5
    and later, where the kernel has it), else by reading every process's parent."""
    found: list[int] = []
    try:
        tasks = os.listdir(PROC / str(pid) / "task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in (PROC / str(pid) / "task" / task / "children").read_bytes().split()]
        except FileNotFoundError:
            return _children_by_parent(pid)
        except OSError:
            continue
    return sorted(found)


def _children_by_parent(pid: int) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and len(fields) > _PPID and fields[_PPID] == str(pid):
                found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first."""
    tree = [pid]
    for parent in tree:
        tree += children(parent)
    return tree


def cpu_seconds(pid: int) -> float:
    """User and system CPU time process ``pid`` has used so far (not counting its children's)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) <= _STIME:
        raise ProcessLookupError(f"no process {pid} in {PROC}")
    return (int(fields[_UTIME]) + int(fields[_STIME])) * TICK


def descendants_cpu_seconds(pid: int) -> float:
    """User and system CPU time so far of every live process below ``pid`` (the proxy's analyser)."""
    total = 0.0
    for below in descendants(pid)[1:]:
        try:
            total += cpu_seconds(below)
        except OSError:
            pass
    return total


def resident_set(pid: int) -> tuple[int, int]:
    """Process ``pid``'s resident set now and at its peak (``VmRSS``, ``VmHWM``), in bytes."""
    memory = _status_kib(pid, "VmRSS", "VmHWM")
    if not memory:
        raise ProcessLookupError(f"no resident set of process {pid} in {PROC}")
    return memory.get("VmRSS", 0) * 1024, memory.get("VmHWM", 0) * 1024


def sample_process(pid: int) -> ProcessSample | None:
    fields = _stat_fields(pid)
    if fields is None or len(fields) <= _CSTIME:
        return None
    memory = _status_kib(pid, "VmRSS", "VmHWM")
    return ProcessSample(
        pid=pid,
        name=_command_name(pid),
        own_cpu_seconds=(int(fields[_UTIME]) + int(fields[_STIME])) * TICK,
        reaped_cpu_seconds=(int(fields[_CUTIME]) + int(fields[_CSTIME])) * TICK,
        rss_bytes=memory.get("VmRSS", 0) * 1024,
        peak_rss_bytes=memory.get("VmHWM", 0) * 1024,
    )


def sample_tree(pid: int) -> TreeSample | None:
    """``pid`` and its descendants now; None without ``/proc`` or if ``pid`` is gone."""
    if not available():
        return None
    processes = [sample for p in descendants(pid) if (sample := sample_process(p)) is not None]
    if not processes or processes[0].pid != pid:
        return None
    return TreeSample(at=time.monotonic(), processes=tuple(processes))


def final_sample(pid: int, timeout: float) -> ProcessSample | None:
    """``pid``'s last CPU times, once it has exited and before it is waited for (it must be a
    child of this process that nothing waits for meanwhile); None if it has not exited within
    ``timeout`` seconds, or is gone. Its resident set is 0 by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = _stat_fields(pid)
        if fields is None or len(fields) <= _CSTIME:
            return None
        if fields[_STATE] in ("Z", "X"):
            return sample_process(pid)
        time.sleep(0.05)
    return None


def reset_peak(pid: int) -> None:
    """Start process ``pid``'s peak resident set afresh from what it holds now (``clear_refs`` 5,
    Linux 4.0 and later); a process that is gone or not ours is left as it is."""
    try:
        (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        pass


def reset_peaks(sample: TreeSample) -> None:
    """:func:`reset_peak` for each process of ``sample``."""
    for pid in sample.pids:
        reset_peak(pid)


def settle(pid: int, quiet: float = 0.2, at_most: float = 5.0) -> TreeSample | None:
    """A sample of ``pid``'s tree once it has used less than 10 ms of CPU in ``quiet``
    seconds (start-up done, imports loaded), or after ``at_most`` seconds anyway."""
    deadline = time.monotonic() + at_most
    previous = sample_tree(pid)
    while previous is not None and time.monotonic() < deadline:
        time.sleep(quiet)
        current = sample_tree(pid)
        if current is None:
            return None
        if len(current.processes) == len(previous.processes) and current.cpu_seconds - previous.cpu_seconds < 0.01:
            return current
        previous = current
    return previous


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the limit now in force.

    Every relayed connection holds two sockets, so the common soft limit of
    1,024 would stop the proxy at about 500 connections (and a server at about
    1,000 clients).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform says; None if neither knows."""
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _system() -> str:
    system = f"{platform.system()} {platform.release()}"
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return system
    return f"{system}, {release.get('PRETTY_NAME', release.get('NAME', ''))}".rstrip(", ")


def machine() -> dict[str, Any]:
    """This machine, as results name it: CPU model and cores, memory, system and Python."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "system": _system(),
        "python": platform.python_version(),
    }


def describe_machine(facts: dict[str, Any]) -> str:
    """``2 × AMD EPYC, 23.5 GiB, Linux 6.1 (Debian GNU/Linux 12), Python 3.13.0``."""
    parts = []
    if facts.get("cores") or facts.get("cpu"):
        parts.append(f"{facts.get('cores') or '?'} × {facts.get('cpu') or 'unknown CPU'}")
    if facts.get("memory_bytes"):
        parts.append(f"{facts['memory_bytes'] / 2**30:.1f} GiB")
    parts.append(str(facts.get("system", "")))
    parts.append(f"Python {facts.get('python')}")
    return ", ".join(part for part in parts if part)
