"""Heartbeat throughput against ``GET /profile/me``, 4 clients, interleaved.

    .venv/bin/python -m benchmarks.heartbeat_throughput [--seconds 5] [--rounds 3] [--quick]

Embedded PostgreSQL (migrated), a JWKS server, and each function's real
functions-framework app served by its own process (werkzeug's threaded
server on loopback, so clients and server do not share a GIL). Each client
has its own user and reading session. A round runs, for ``--seconds`` each
and in a shuffled order:

- ``profile``: ``GET /me`` (token check, user lookup, commit);
- ``heartbeat``: ``POST /sessions/{id}/beat`` as the code stands;
- ``heartbeat-unprepared``: the same, with the beat's statement no longer
  marked ``prepared=True`` (``shared.db.dialect``) in the server process, to
  show what preparing it once per connection buys.

Prints requests per second (median over rounds), the ratio to profile and
the load average beside them. Goal: heartbeat >= 0.9x profile.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLIENTS = 4
GOAL = 0.9

SERVER = """
import logging, os, sys
sys.path.insert(0, sys.argv[1])
logging.getLogger("werkzeug").setLevel(logging.WARNING)
if os.environ.get("BENCH_UNPREPARED") == "1":
    import shared.reading
    shared.reading._BEAT = shared.reading._BEAT.execution_options(prepared=False)
from functions_framework import create_app
from werkzeug.serving import make_server
name, port = sys.argv[2], int(sys.argv[3])
app = create_app(name, os.path.join(sys.argv[1], "functions", name, "main.py"))
make_server("127.0.0.1", port, app, threaded=True).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def setup(directory: Path) -> tuple[dict[str, str], list[dict[str, str]], Any, Any]:
    """Database, JWKS server, and CLIENTS users each with a published material."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer
    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade
    from tests.factories import make_material, make_user

    server = start_postgres(directory / "pg", delete_on_exit=True)
    url = create_database(server, "beat")
    engine = create_engine(url)
    with engine.begin() as connection:
        upgrade(connection)
    issuer = LocalIssuer(directory / "key.pem")
    clients = []
    with Session(engine) as session, session.begin():
        for _ in range(CLIENTS):
            user = make_user(session)
            # Long enough that a few minutes of beats never complete it.
            material = make_material(session, page_count=500)
            token = issuer.token(subject=user.auth0_id, email=user.email, name=user.name)
            clients.append({"token": token, "file_id": str(material.id)})
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
        **os.environ,
        "DATABASE_URL": url,
        "AUTH_ISSUER": LOCAL_ISSUER,
        "AUTH_AUDIENCE": LOCAL_AUDIENCE,
        "AUTH_JWKS_URL": f"http://127.0.0.1:{jwks.server_port}/.well-known/jwks.json",
        "GCS_BUCKET": "lectern-bench",
        "EMBEDDINGS_PROVIDER": "local",
        "LOG_LEVEL": "WARNING",
    }
    return env, clients, server, jwks


def request(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else None


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no server on {port}")


def measure(seconds: float, call: Any, clients: list[dict[str, str]]) -> float:
    """Requests per second from CLIENTS threads calling ``call(client)`` for ``seconds``."""
    counts = [0] * len(clients)
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < stop:
            status, body = call(clients[index])
            if not 200 <= status < 300:
                errors.append(f"{status} {body}")
                return
            counts[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (git archive of a commit): served too"
    )
    args = parser.parse_args(argv)
    seconds, rounds = (3.0, 3) if args.quick else (args.seconds, args.rounds)

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as temporary:
        env, clients, server, jwks = setup(Path(temporary))
        try:
            ports = {}
            variants = [
                ("profile", "profile", "0", REPO),
                ("heartbeat", "heartbeat", "0", REPO),
                ("heartbeat-unprepared", "heartbeat", "1", REPO),
            ]
            if args.baseline:
                variants += [
                    ("profile@baseline", "profile", "0", args.baseline),
                    ("heartbeat@baseline", "heartbeat", "0", args.baseline),
                ]
            for variant, name, unprepared, code in variants:
                ports[variant] = free_port()
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", SERVER, str(code), name, str(ports[variant])],
                        env={**env, "BENCH_UNPREPARED": unprepared},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for port in ports.values():
                wait_ready(port)
            # One session per client and server; every beat goes to it.
            sessions: dict[str, list[str]] = {}
            for variant in [v for v in ports if v.startswith("heartbeat")]:
                sessions[variant] = []
                for client in clients:
                    status, body = request(
                        ports[variant], "POST", "/sessions", client["token"],
                        {"file_id": client["file_id"]},
                    )  # fmt: skip
                    assert status == 201, body
                    sessions[variant].append(body["session"]["id"])

            def caller(variant: str) -> Any:
                port = ports[variant]
                if variant.startswith("profile"):
                    return lambda client: request(port, "GET", "/me", client["token"])
                by_token = {c["token"]: s for c, s in zip(clients, sessions[variant], strict=True)}
                return lambda client: request(
                    port,
                    "POST",
                    f"/sessions/{by_token[client['token']]}/beat",
                    client["token"],
                    {"active_seconds": 1},
                )

            for variant in ports:  # warm: connections, JWKS, first compiles
                measure(0.5, caller(variant), clients)
            results: dict[str, list[float]] = {variant: [] for variant in ports}
            loads = []
            for _ in range(rounds):
                order = list(ports)
                random.shuffle(order)
                for variant in order:
                    loads.append(load())
                    results[variant].append(measure(seconds, caller(variant), clients))
        finally:
            for process in processes:
                process.terminate()
                process.wait()
            jwks.shutdown()
            server.cleanup()
    profile = statistics.median(results["profile"])
    load_text = f"{min(loads):.2f}-{max(loads):.2f}"
    print(f"heartbeat throughput, {CLIENTS} clients, {rounds} interleaved rounds of {seconds:g} s")
    print("| what | requests/s (median) | per round | / profile | load |")
    print("| --- | --- | --- | --- | --- |")
    ratios = {}
    for variant, values in results.items():
        median = statistics.median(values)
        ratios[variant] = median / profile
        goal = ""
        if variant.startswith("heartbeat"):
            goal = " (goal 0.9x met)" if ratios[variant] >= GOAL else " (goal 0.9x missed)"
        per_round = ", ".join(f"{v:.0f}" for v in values)
        print(
            f"| {variant} | {median:.0f} | {per_round} | {ratios[variant]:.2f}x{goal} | "
            f"{load_text} |"
        )
    return {"ratios": ratios, "load": loads}


if __name__ == "__main__":
    main()
