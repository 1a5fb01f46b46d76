"""Cold start of every packaged function against a bare function, interleaved.

    .venv/bin/python -m benchmarks.cold_start [--repeat 5] [--quick] [--functions a,b]

Builds every package (scripts/package_functions.py) into a temporary folder,
starts an embedded PostgreSQL (migrated) and a JWKS server on loopback, and
then, round after round in a shuffled order, runs each function in a fresh
interpreter whose path holds only its package and the venv's site-packages,
with the environment a deployed function gets:

- **import**: ``functions_framework.create_app`` of the package's ``main.py``;
- **first 2xx**: import, then the first request to one of its database
  routes, with a valid bearer token (the JWKS fetched, the user looked up:
  everything a first request does in production except the Cloud SQL
  connector, measured apart below).

The bare function is ``import functions_framework, sqlalchemy, pg8000`` and a
route that runs ``SELECT 1`` on a new engine: the floor any function here pays.
Ratios are medians over medians; the machine's load average is printed beside
them because the other processes on this machine move every figure.

The Cloud SQL connector's share is measured apart (no network here): the
import of ``google.cloud.sql.connector`` and the creation of a ``Connector``,
in a fresh interpreter, against the bare import.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# A database route per function, called by an admin (moderate needs one).
ROUTES: dict[str, tuple[str, str]] = {
    "bare": ("GET", "/"),
    "catalog": ("GET", "/majors"),
    "profile": ("GET", "/me"),
    "heartbeat": ("GET", "/recent"),
    "tasks": ("GET", "/"),
    "submit": ("GET", "/"),
    "moderate": ("GET", "/stats"),
}
GOAL_IMPORT = 1.3
GOAL_FIRST = 1.5

BARE_MAIN = '''"""The floor: the framework, SQLAlchemy core and the driver, one SELECT 1."""

import os

import functions_framework
import pg8000  # noqa: F401
import sqlalchemy

engine = None


@functions_framework.http
def bare(request):
    global engine
    if engine is None:
        engine = sqlalchemy.create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
    return "ok"
'''

PROBE = """
import json, os, sys, time
start = time.perf_counter()
package, site, target, method, path = sys.argv[1:6]
sys.path[:0] = [package, site]
from functions_framework import create_app
app = create_app(target, package + "/main.py")
imported = time.perf_counter()
first = None
if method:
    client = app.test_client()
    token = os.environ["BENCH_TOKEN"]
    response = client.open(path, method=method, headers={"Authorization": "Bearer " + token})
    if not 200 <= response.status_code < 300:
        raise SystemExit(f"{target} {path}: {response.status_code} {response.get_data()[:300]!r}")
    first = (time.perf_counter() - start) * 1000
print(json.dumps({"import_ms": (imported - start) * 1000, "first_ms": first}))
"""

CONNECTOR_PROBE = """
import sys, time, json
sys.path[:0] = [sys.argv[1]]
start = time.perf_counter()
import functions_framework, sqlalchemy, pg8000
bare = time.perf_counter()
from google.cloud.sql.connector import Connector
imported = time.perf_counter()
from google.auth.credentials import AnonymousCredentials
# Anonymous: no credentials here; in production google.auth.default() adds a metadata-server call.
connector = Connector(refresh_strategy="lazy", credentials=AnonymousCredentials())
created = time.perf_counter()
connector.close()
print(json.dumps({"bare_ms": (bare - start) * 1000, "import_ms": (imported - bare) * 1000,
                  "create_ms": (created - imported) * 1000}))
"""


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_probe(env: dict[str, str], package: Path, site: str, target: str) -> dict[str, Any]:
    method, path = ROUTES.get(target, ("", ""))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(package), site, target, method, path],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{target}: {result.stderr.strip()[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def stack(directory: Path) -> tuple[dict[str, str], Any, Any]:
    """Embedded PostgreSQL (migrated, one admin) and a JWKS server: the environment."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.local.demo import ensure_user
    from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer
    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade

    server = start_postgres(directory / "pg", delete_on_exit=True)
    url = create_database(server, "cold")
    engine = create_engine(url)
    with engine.begin() as connection:
        upgrade(connection)
    issuer = LocalIssuer(directory / "key.pem")
    subject = f"bench|{uuid.uuid4().hex}"
    with Session(engine) as session, session.begin():
        ensure_user(session, subject=subject, email="cold@lectern.local", name="Cold", role="ADMIN")
    engine.dispose()
    body = json.dumps(issuer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    jwks = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    env = {
        "DATABASE_URL": url,
        "AUTH_ISSUER": LOCAL_ISSUER,
        "AUTH_AUDIENCE": LOCAL_AUDIENCE,
        "AUTH_JWKS_URL": f"http://127.0.0.1:{jwks.server_port}/.well-known/jwks.json",
        "GCS_BUCKET": "lectern-bench",
        "EMBEDDINGS_PROVIDER": "local",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BENCH_TOKEN": issuer.token(subject=subject, email="cold@lectern.local", name="Cold"),
    }
    return env, server, jwks


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--functions", default="", help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat

    from scripts.package_functions import build_all

    site = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        packages = {p.name: p.directory for p in build_all(directory / "build")}
        wanted = [n for n in args.functions.split(",") if n] or sorted(packages)
        bare = directory / "bare"
        bare.mkdir()
        (bare / "main.py").write_text(BARE_MAIN)
        packages["bare"] = bare
        env, server, jwks = stack(directory)
        try:
            targets = ["bare", *wanted]
            samples: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
            loads: list[float] = []
            for _ in range(repeat):
                loads.append(load())
                order = targets[:]
                random.shuffle(order)
                for target in order:
                    samples[target].append(run_probe(env, packages[target], site, target))
            connector = json.loads(
                subprocess.run(
                    [sys.executable, "-I", "-S", "-c", CONNECTOR_PROBE, site],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
        finally:
            jwks.shutdown()
            server.cleanup()
    return report(samples, loads, connector)


def report(
    samples: dict[str, list[dict[str, Any]]], loads: list[float], connector: dict[str, float]
) -> dict[str, Any]:
    def median(target: str, key: str) -> float | None:
        values = [s[key] for s in samples[target] if s[key] is not None]
        return statistics.median(values) if values else None

    bare_import, bare_first = median("bare", "import_ms"), median("bare", "first_ms")
    assert bare_import is not None
    assert bare_first is not None
    load_text = f"{min(loads):.2f}-{max(loads):.2f}"
    print(
        f"cold start, {len(loads)} interleaved rounds, load {load_text}; "
        f"bare: import {bare_import:.0f} ms, first 2xx {bare_first:.0f} ms"
    )
    print("| function | import ms | import / bare | first 2xx ms | first 2xx / bare | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows: dict[str, Any] = {}
    for target in samples:
        if target == "bare":
            continue
        imported, first = median(target, "import_ms"), median(target, "first_ms")
        assert imported is not None
        import_ratio = imported / bare_import
        first_ratio = None if first is None else first / bare_first
        first_text = "-" if first is None else f"{first:.0f}"
        ratio_text = "-" if first_ratio is None else f"{first_ratio:.2f}x"
        marks = ("" if import_ratio <= GOAL_IMPORT else " (goal 1.3x missed)", "")
        if first_ratio is not None and first_ratio > GOAL_FIRST:
            marks = (marks[0], " (goal 1.5x missed)")
        print(
            f"| {target} | {imported:.0f} | {import_ratio:.2f}x{marks[0]} | {first_text} | "
            f"{ratio_text}{marks[1]} | {load_text} |"
        )
        rows[target] = {"import_ratio": import_ratio, "first_ratio": first_ratio}
    print(
        f"Cloud SQL connector (no network): import {connector['import_ms']:.0f} ms + "
        f"Connector() {connector['create_ms']:.0f} ms, on top of the bare import "
        f"{connector['bare_ms']:.0f} ms"
    )
    return {"functions": rows, "load": loads, "connector": connector}


if __name__ == "__main__":
    main()
