"""Peak memory of a direct upload's ``complete``: a 100 MB PDF against a 5 MB one.

    .venv/bin/python -m benchmarks.upload_memory [--sizes 5,100] [--pages 50]

For each size, builds a scan-like PDF (``--pages`` pages, each one image of
random bytes, as a scanner writes them: the page objects spread across the
whole file), opens a direct upload through the real ``submit`` app, sends
the bytes in 8 MiB chunks with the google-cloud-storage resumable client to
gcp-storage-emulator (its own process), then runs ``complete`` in a fresh
child process and reports that process's resident memory just before the
call and at its peak (VmHWM). The child imports and warms up the same way for
every size, so the difference between sizes is what ``complete`` costs.
Everything runs on loopback in a temporary directory; nothing is kept.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUCKET = "lectern-bench"
EMAIL = "bench@lectern.local"
CHUNK = 8 * 1024 * 1024


def scanned_pdf(pages: int, size: int) -> bytes:
    """About ``size`` bytes: ``pages`` pages, each drawing one grey image of random bytes."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        StreamObject,
    )

    writer = PdfWriter()
    side = int((size // pages) ** 0.5)
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        image = StreamObject()
        image.set_data(os.urandom(side * side))
        image.update(
            {
                NameObject("/Type"): NameObject("/XObject"),
                NameObject("/Subtype"): NameObject("/Image"),
                NameObject("/Width"): NumberObject(side),
                NameObject("/Height"): NumberObject(side),
                NameObject("/ColorSpace"): NameObject("/DeviceGray"),
                NameObject("/BitsPerComponent"): NumberObject(8),
            }
        )
        drawing = DecodedStreamObject()
        drawing.set_data(b"q 612 0 0 792 0 0 cm /Scan Do Q")
        page[NameObject("/Resources")] = DictionaryObject(
            {
                NameObject("/XObject"): DictionaryObject(
                    {NameObject("/Scan"): writer._add_object(image)}
                )
            }
        )
        page[NameObject("/Contents")] = writer._add_object(drawing)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(upload_id: str, body_json: str, token: str) -> None:
    """In a fresh process: build the app, warm it up, then complete once."""
    from functions_framework import create_app

    app = create_app("submit", str(REPO / "functions" / "submit" / "main.py")).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    # Warm-up: auth, the database pool and the storage client, as a served instance has.
    assert app.get("/", headers=headers).status_code == 200
    before = _memory_kib("VmRSS")
    started = time.perf_counter()
    response = app.post(
        f"/uploads/{upload_id}/complete",
        data=body_json,
        headers=headers,
        content_type="application/json",
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.get_data(as_text=True)
    page_count = response.get_json()["request"]["page_count"]
    print(
        json.dumps(
            {
                "rss_before_kib": before,
                "peak_kib": _memory_kib("VmHWM"),
                "seconds": elapsed,
                "page_count": page_count,
            }
        )
    )


def _serve_jwks(jwks: dict[str, Any]) -> str:
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5,100", help="file sizes in MB, comma-separated")
    parser.add_argument("--pages", type=int, default=50)
    arguments = parser.parse_args()

    import requests
    from google.cloud.storage._media.requests import ResumableUpload

    from shared.local.demo import ensure_user, load_demo_data
    from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer, local_subject
    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="lectern-upload-bench-") as scratch:
        workdir = Path(scratch)
        storage_port = _free_port()
        # Its own process: the emulator keeps every byte in memory, which is not ours.
        emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(storage_port),
                "--in-memory",
                "--default-bucket",
                BUCKET,
                "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        postgres = start_postgres(workdir / "pgdata", delete_on_exit=True)
        try:
            database = create_database(postgres, "bench")
            issuer = LocalIssuer(workdir / "key.pem")
            env = {
                "DATABASE_URL": database,
                "GCS_BUCKET": BUCKET,
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{storage_port}",
                "AUTH_ISSUER": LOCAL_ISSUER,
                "AUTH_AUDIENCE": LOCAL_AUDIENCE,
                "AUTH_JWKS_URL": _serve_jwks(issuer.jwks()),
                "MAX_UPLOAD_MB": "200",
                "RATE_LIMIT_UPLOADS_PER_HOUR": "1000",
                "STORAGE_TIMEOUT_S": "30",
                "LOG_LEVEL": "WARNING",
            }
            os.environ.update(env)
            _wait_for_port(storage_port)
            from shared.config import load_settings
            from shared.db.engine import transaction

            upgrade()
            with transaction(load_settings()) as session:
                report = load_demo_data(session)
                del report
                ensure_user(
                    session, subject=local_subject(EMAIL), email=EMAIL, name="Bench", role="STUDENT"
                )
                course_id, type_id, lecturer_id = _first_references(session)
            token = issuer.token(subject=local_subject(EMAIL), email=EMAIL, email_verified=True)
            from functions_framework import create_app

            app = create_app("submit", str(REPO / "functions" / "submit" / "main.py")).test_client()
            headers = {"Authorization": f"Bearer {token}"}
            columns = ("size", "pages", "RSS before", "peak RSS", "growth", "complete")
            print("{:>8} {:>6} {:>11} {:>9} {:>7} {:>9}".format(*columns))
            for megabytes in [int(part) for part in arguments.sizes.split(",")]:
                data = scanned_pdf(arguments.pages, megabytes * 1024 * 1024)
                opened = app.post(
                    "/uploads",
                    json={
                        "filename": f"scan-{megabytes}.pdf",
                        "size_bytes": len(data),
                        "content_type": "application/pdf",
                    },
                    headers=headers,
                )
                assert opened.status_code == 201, opened.get_data(as_text=True)
                upload = opened.get_json()["upload"]
                sender = ResumableUpload(upload["upload_url"], CHUNK, checksum=None)
                # Adopt the session the server created, as a browser does.
                sender._resumable_url = upload["upload_url"]
                sender._stream = io.BytesIO(data)
                sender._total_bytes = len(data)
                sender._content_type = "application/pdf"
                transport = requests.Session()
                while not sender.finished:
                    sender.transmit_next_chunk(transport)
                del data, sender
                form = {
                    "course_id": course_id,
                    "type_id": type_id,
                    "lecturer_id": lecturer_id,
                    "title": f"Scan {megabytes} MB",
                    "academic_year": 1,
                    "material_year": 2024,
                }
                result = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.upload_memory",
                        "--child",
                        upload["id"],
                        json.dumps(form),
                        token,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=REPO,
                    env={**os.environ},
                )
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                before, peak = measured["rss_before_kib"] / 1024, measured["peak_kib"] / 1024
                pages = measured["page_count"]
                print(
                    f"{megabytes:>6} MB {pages:>6} {before:>8.1f} MB {peak:>6.1f} MB"
                    f" {peak - before:>+5.1f} MB {measured['seconds']:>7.2f} s"
                )
        finally:
            postgres.cleanup()
            emulator.terminate()
            emulator.wait(timeout=10)


def _first_references(session: Any) -> tuple[str, str, str]:
    from sqlalchemy import select

    from shared.db.models import Course, Lecturer, MaterialType

    course = session.scalar(
        select(Course).where(Course.year_id == 1).order_by(Course.name).limit(1)
    )
    material_type = session.scalar(
        select(MaterialType).order_by(MaterialType.display_name).limit(1)
    )
    lecturer = session.scalar(select(Lecturer).order_by(Lecturer.name).limit(1))
    return str(course.id), str(material_type.id), str(lecturer.id)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the storage emulator did not start")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
