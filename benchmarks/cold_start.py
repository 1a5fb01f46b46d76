"""Cold start: how long each packaged function takes to import, alone.

    .venv/bin/python -m benchmarks.cold_start [--repeat 5]

Builds every package (scripts/package_functions.py) into a temporary folder
and, for each, times ``import main`` in a fresh interpreter whose path holds
only that package and the venv's site-packages, with the settings a deployed
function gets (DATABASE_URL form; nothing is connected at import). This is
the import share of a cold start, before the first request's connections.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from scripts.package_functions import build_all

ENV = {
    "DATABASE_URL": "postgresql+pg8000://u@/db?unix_sock=/nonexistent/.s.PGSQL.5432",
    "AUTH_ISSUER": "https://issuer.example/",
    "AUTH_AUDIENCE": "https://api.example",
    "AUTH_JWKS_URL": "https://issuer.example/.well-known/jwks.json",
    "GCS_BUCKET": "lectern-materials",
    "EMBEDDINGS_PROVIDER": "local",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
}
PROBE = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
start = time.perf_counter()
import main
print((time.perf_counter() - start) * 1000)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    site = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as directory:
        packages = build_all(Path(directory))
        print("| function | import ms (median) | min | max |")
        print("| --- | --- | --- | --- |")
        for package in packages:
            times = []
            for _ in range(args.repeat):
                result = subprocess.run(
                    [sys.executable, "-I", "-S", "-c", PROBE, str(package.directory), site],
                    env=ENV,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times.append(float(result.stdout.strip().splitlines()[-1]))
            print(
                f"| {package.name} | {statistics.median(times):.0f} | {min(times):.0f} | "
                f"{max(times):.0f} |"
            )


if __name__ == "__main__":
    main()
