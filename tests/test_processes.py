"""Process figures from ``/proc`` as the demo, the benchmarks and the load tests read them, and the
machine they name."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from inspector import processes
from inspector.processes import (
    available,
    children,
    cpu_seconds,
    descendants,
    descendants_cpu_seconds,
    describe_machine,
    machine,
    raise_open_file_limit,
    resident_set,
)

needs_proc = pytest.mark.skipif(not available(), reason="process figures are read from Linux's /proc")
NO_SUCH_PROCESS = 2**22 + 12345


@needs_proc
def test_descendants_reach_a_grandchild_and_either_way_of_listing_children_agrees() -> None:
    # A child that starts a busy grandchild and waits for it.
    script = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while len(descendants(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = descendants(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        (grandchild,) = descendants(child.pid)[1:]
        assert tree.index(child.pid) < tree.index(grandchild)  # parents first
        assert children(child.pid) == processes._children_by_parent(child.pid) == [grandchild]
        while cpu_seconds(grandchild) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert descendants_cpu_seconds(child.pid) >= 0.05
    finally:
        for pid in descendants(child.pid)[::-1]:
            os.kill(pid, 9)
        child.wait(20)


@needs_proc
def test_one_figure_of_a_live_process_and_an_error_for_a_gone_one() -> None:
    assert cpu_seconds(os.getpid()) > 0
    rss, peak = resident_set(os.getpid())
    assert 0 < rss <= peak
    for read in (cpu_seconds, resident_set):
        with pytest.raises(OSError):
            read(NO_SUCH_PROCESS)
    assert descendants_cpu_seconds(NO_SUCH_PROCESS) == 0.0 and children(NO_SUCH_PROCESS) == []


def test_the_open_file_limit_is_raised_to_the_hard_limit_where_allowed() -> None:
    limit = raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limit == soft and (soft == hard or hard == resource.RLIM_INFINITY)
    assert raise_open_file_limit() == limit


def test_the_machine_is_named_by_its_facts() -> None:
    facts = machine()
    assert facts["cores"] == os.cpu_count() and facts["python"] in describe_machine(facts)
    text = describe_machine(
        {"cores": 2, "cpu": "AMD EPYC", "memory_bytes": 23.5 * 2**30, "system": "Linux 6.1", "python": "3.13.0"}
    )
    assert text == "2 × AMD EPYC, 23.5 GiB, Linux 6.1, Python 3.13.0"
