"""Media benchmark: upload + complete throughput on the local backend, and verifying a 20 MB file.

    PYTHONPATH=src python benchmarks/media_upload.py

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, and prints:
1. the throughput of the whole upload flow for 1 MB PDFs (`POST /media`, `PUT` to the signed local
   URL, `POST /media/{id}/complete`, through the full app via httpx's ASGI transport) with 8
   concurrent clients, with p50/p95 of each flow;
2. the time to verify a 20 MB file (streamed SHA-256, sniffing, allowlist) and the peak RSS of a fresh
   process doing only that, against its baseline — memory stays bounded by the 1 MB read chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config

from prm.app import create_app, migrations_dir
from prm.core import embedded
from prm.core.db import Database
from prm.identity import service as identity
from prm.identity.schemas import ApiKeyCreate, OrganisationCreate
from prm.settings import Settings

CLIENTS = 8
PER_CLIENT = 15
FILE_BYTES = 1024 * 1024
BIG_BYTES = 20 * 1024 * 1024
BASE_URL = "http://bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def pdf_bytes(size: int) -> bytes:
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    tail = b"\n%%EOF\n"
    return head + secrets.token_bytes(size - len(head) - len(tail)) + tail


async def upload_flow(app: Any, key: str) -> None:
    transport = httpx.ASGITransport(app=app)
    latencies: list[float] = []
    files = [[pdf_bytes(FILE_BYTES) for _ in range(PER_CLIENT)] for _ in range(CLIENTS)]

    async def client(batch: list[bytes]) -> None:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {key}"}) as http:
            for data in batch:
                t0 = time.perf_counter()
                r = await http.post("/media", json={
                    "filename": "scan.pdf", "content_type": "application/pdf", "size_bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                })
                if r.status_code != 201:
                    raise SystemExit(f"declare: {r.status_code} {r.text}")
                upload = r.json()["upload"]
                put = await http.put(upload["url"], content=data, headers=upload["headers"])
                if put.status_code != 200:
                    raise SystemExit(f"upload: {put.status_code} {put.text}")
                done = await http.post(f"/media/{r.json()['media']['id']}/complete")
                if done.status_code != 200:
                    raise SystemExit(f"complete: {done.status_code} {done.text}")
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(b) for b in files))
    seconds = time.perf_counter() - t0
    n = CLIENTS * PER_CLIENT
    print(
        f"upload+complete of 1 MB PDFs, local disk, {CLIENTS} clients: {n} files in {seconds:.2f} s = "
        f"{n / seconds:.1f} files/s ({n * FILE_BYTES / seconds / 1024 / 1024:.1f} MB/s)   "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms   p95 {pct(latencies, 95) * 1000:.1f} ms"
    )


def _verify_in_child(root: str, key: str, queue: Any) -> None:
    """Run in a fresh process: verify the big file and report time and RSS (KiB on Linux)."""
    from prm.adapters.storage import LocalStorage
    from prm.media import service, verification

    storage = LocalStorage(root=Path(root), secret=b"bench", base_url=BASE_URL)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        digest = service._digest_object(storage, key, BIG_BYTES + 1)
        verification.verify(declared_type="application/pdf", declared_size=BIG_BYTES, declared_sha256=None,
                            digest=digest, cap=100 * 1024 * 1024)
        runs.append(time.perf_counter() - t0)
    queue.put((statistics.median(runs), baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def verify_big_file() -> None:
    root = Path(tempfile.mkdtemp(prefix="prm-bench-media-"))
    key = f"{uuid.uuid4()}/big"
    path = root / key
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:  # written in chunks: the parent never holds 20 MB either
        out.write(b"%PDF-1.7\n")
        remaining = BIG_BYTES - 9 - 7
        while remaining:
            chunk = os.urandom(min(remaining, 1024 * 1024))
            out.write(chunk)
            remaining -= len(chunk)
        out.write(b"\n%%EOF\n")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_verify_in_child, args=(str(root), key, queue))
    child.start()
    seconds, baseline, peak = queue.get(timeout=300)
    child.join()
    unit = 1024 if sys.platform != "darwin" else 1024 * 1024
    print(
        f"verify a 20 MB PDF (streamed SHA-256 + sniff + allowlist): median {seconds * 1000:.0f} ms "
        f"({BIG_BYTES / seconds / 1024 / 1024:.0f} MB/s); peak RSS {peak * unit / 1024 / 1024:.1f} MB "
        f"(baseline {baseline * unit / 1024 / 1024:.1f} MB, +{(peak - baseline) * unit / 1024 / 1024:.1f} MB)"
    )


def prepare() -> str:
    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


async def main(url: str) -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=url,
        run_worker=False,  # type: ignore[call-arg]
        log_level="ERROR",
        secret_key="bench-secret-key-0123456789-abcdefghijklmnop",  # type: ignore[arg-type]
        seed_demo=False,
        prm_data_dir=Path(tempfile.mkdtemp(prefix="prm-bench-data-")),
        public_base_url=BASE_URL,
    )
    db = Database.connect(url, pool_size=20, max_overflow=10)
    app = create_app(settings, database=db)
    async with db.sessionmaker() as s:
        org = await identity.create_organisation(
            s, OrganisationCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="UTC"))
        _, key = await identity.create_api_key(s, org.id, ApiKeyCreate(name="bench", role="coordinator"))  # type: ignore[arg-type]
        await s.commit()
    await upload_flow(app, key)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(prepare()))
    verify_big_file()
