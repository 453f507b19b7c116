"""Helpers for the API tests (a uniquely named module: the test dirs are not packages)."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import uvicorn
from fastapi import FastAPI
from repo_data import DATA_DIR

from magdi.policy import Endpoint, OperatorPolicy

# Debian's chromium (`make browser`), driven by playwright in the viewer tests
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO_TESTS = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEST_HOSTS = ["testserver", "127.0.0.1", "localhost"]  # TestClient's Host header, and uvicorn on loopback
# The operator's configuration the API tests run under: one declared endpoint, the repo's data/ as root.
POLICY = OperatorPolicy(
    endpoints=[Endpoint(name="sim", base_url="http://127.0.0.1:8901/v1", models=["sim-a", "sim-b"], max_tokens=2048,
                        limits={"rpm": 60})],
    data_root=DATA_DIR, job_max_questions=2000, job_max_rounds=5,
)


def dump(driver: neo4j.Driver) -> dict[str, Any]:
    """Everything a write or an escape could change: data, tokens, schema, users.

    Nodes and relationships with labels/types and all properties; the label, relationship-type
    and property-key tokens (`db.createLabel` adds a token without a node); indexes, constraints
    and users (through the system database).
    """
    def rows(query: str, database: str | None = None) -> list[Any]:
        records, _, _ = driver.execute_query(query, database_=database, routing_=neo4j.RoutingControl.READ)
        return sorted(repr(r.values()) for r in records)

    return {
        "nodes": rows("MATCH (n) RETURN labels(n), properties(n)"),
        "relationships": rows("MATCH (a)-[r]->(b) RETURN elementId(a), type(r), properties(r), elementId(b)"),
        "labels": rows("CALL db.labels()"),
        "types": rows("CALL db.relationshipTypes()"),
        "keys": rows("CALL db.propertyKeys()"),
        "indexes": rows("SHOW INDEXES YIELD name, type, labelsOrTypes, properties RETURN *"),
        "constraints": rows("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties RETURN *"),
        "users": rows("SHOW USERS YIELD user RETURN user", database="system"),
    }


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def png_pixels(data: bytes) -> list[tuple[int, ...]]:
    """RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes), with the stdlib only."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG layout"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    prev, pixels, i = bytearray(stride), [], 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [tuple(line[x:x + 3]) for x in range(0, stride, bpp)]
        prev = line
    return pixels


def near(pixel: tuple[int, ...], rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb, strict=True))
