"""``make bench``: every benchmark of this folder in quick mode, one after another.

    .venv/bin/python -m benchmarks.bench [--only cold_start,heartbeat_throughput] [--full]

Each benchmark runs in its own process with its quick arguments (``--full``
drops them), under a time limit, with the load average printed before it; a
benchmark that is missing or fails is reported and the rest still run. The
ratios each prints are measured interleaved within that benchmark's run
(A and B alternate round by round), so the machine's load moves both sides.
Timing never runs in ``make test``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module, quick arguments, time limit in seconds. The whole list stays under
# 10 minutes on this 2-core machine with other work running.
BENCHMARKS: list[tuple[str, list[str], int]] = [
    ("cold_start", ["--quick"], 150),
    ("heartbeat_throughput", ["--quick"], 120),
    ("search_recall", ["--quick"], 180),
    ("search_quality", ["--quick"], 90),
    ("upload_memory", ["--sizes", "5,25", "--pages", "20"], 90),
    ("ingest_throughput", ["--pages", "40", "--chunks", "1000", "--repeat", "1"], 90),
]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated module names")
    parser.add_argument("--full", action="store_true", help="each benchmark's own defaults")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    started = time.monotonic()
    summary: list[str] = []
    for module, quick, limit in BENCHMARKS:
        if only and module not in only:
            continue
        if importlib.util.find_spec(f"benchmarks.{module}") is None:
            summary.append(f"{module}: not present, skipped")
            continue
        command = [sys.executable, "-m", f"benchmarks.{module}", *([] if args.full else quick)]
        print(f"\n== {module} {' '.join(command[3:])} (load {load()})", flush=True)
        begun = time.monotonic()
        try:
            result = subprocess.run(command, cwd=REPO, timeout=None if args.full else limit)
            outcome = "ok" if result.returncode == 0 else f"failed ({result.returncode})"
        except subprocess.TimeoutExpired:
            outcome = f"stopped after {limit} s"
        summary.append(f"{module}: {outcome} in {time.monotonic() - begun:.0f} s, load {load()}")
    print(f"\n== make bench: {time.monotonic() - started:.0f} s")
    for line in summary:
        print(f"  {line}")
    return 0 if all(": ok" in line or "skipped" in line for line in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
