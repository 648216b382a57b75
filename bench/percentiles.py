"""How fast and how close the report's percentiles are: ``Distribution`` against exact quantiles.

    .venv/bin/python -m bench.percentiles [--values 200000] [--against DIR]

For a few shapes of values (sizes, durations), builds each distribution as a
report builds it (one per connection of ``--per-connection`` values, merged
into one) and prints the relative error of p50, p95 and p99 against
``statistics.quantiles(method="inclusive")`` over all the values; then the CPU
time of merges and adds. ``--against DIR`` runs the same with the
``inspector/stats.py`` found in ``DIR`` (a copy of another tree) side by side.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector import stats


def _load(directory: str) -> Any:
    """The ``Distribution`` class of ``DIR/inspector/stats.py``."""
    source = (Path(directory) / "inspector" / "stats.py").read_text(encoding="utf-8")
    namespace: dict[str, Any] = {"__name__": "other_stats"}
    exec(compile(source.replace("from .", "from inspector."), "other_stats", "exec"), namespace)
    return namespace["Distribution"]


def _cpu(work: Callable[[], object], times: int = 1) -> float:
    start = time.process_time()
    for _ in range(times):
        work()
    return (time.process_time() - start) / times


def _built(kind: Any, values: list[float], per_connection: int) -> Any:
    whole = kind()
    for start in range(0, len(values), per_connection):
        part = kind()
        for value in values[start : start + per_connection]:
            part.add(value)
        whole.merge(part)
    return whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=200_000, help="values per shape (default 200,000)")
    parser.add_argument("--per-connection", type=int, default=100, help="values per part merged (default 100)")
    parser.add_argument("--against", metavar="DIR", help="also run DIR/inspector/stats.py")
    args = parser.parse_args()
    kinds: dict[str, Any] = {"this tree": stats.Distribution}
    if args.against:
        kinds = {args.against: _load(args.against), **kinds}
    generator = random.Random(1)
    n = args.values
    shapes = {
        "lognormal sizes": [generator.lognormvariate(5, 1.5) for _ in range(n)],
        "uniform 0-1 s": [generator.random() for _ in range(n)],
        "integer bytes 20-64Ki": [float(generator.randint(20, 65536)) for _ in range(n)],
        "inter-arrival, exp. 1 ms": [generator.expovariate(1000) for _ in range(n)],
    }
    print("relative error against exact quantiles, %: p50 / p95 / p99")
    for shape, values in shapes.items():
        exact = statistics.quantiles(values, n=100, method="inclusive")
        for name, kind in kinds.items():
            whole = _built(kind, values, args.per_connection)
            errors = [abs(whole.quantile(q / 100) - exact[q - 1]) / exact[q - 1] * 100 for q in (50, 95, 99)]
            print(f"  {shape:26} {name:30} " + " / ".join(f"{e:.3f}" for e in errors))
    values = shapes["lognormal sizes"][:50_000]
    print("CPU time")
    for name, kind in kinds.items():
        full = kind()
        for value in values:
            full.add(value)
        parts = []
        for start in range(0, 50_000, 50):
            part = kind()
            for value in values[start : start + 50]:
                part.add(value)
            parts.append(part)

        def merge_parts(full: Any = full, parts: list[Any] = parts) -> None:
            merged = full.copy()
            for part in parts:
                merged.merge(part)

        def merge_full(full: Any = full) -> None:
            full.copy().merge(full)

        def adds(kind: Any = kind) -> None:
            d = kind()
            for value in values:
                d.add(value)

        print(
            f"  {name:30} 1,000 merges of 50 values into a full one {_cpu(merge_parts, 3) * 1e3:8.1f} ms;"
            f" two full merged {_cpu(merge_full, 20) * 1e3:6.2f} ms; 50,000 adds {_cpu(adds, 3) * 1e3:6.1f} ms"
        )


if __name__ == "__main__":
    main()
