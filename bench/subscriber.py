"""bench/scale's end-to-end REST-hook subscriber: one asyncio process that answers every request 204 over
keep-alive connections and notes when each task's event arrived, one line per request appended to a file.

A real subscriber runs on machines of its own. Here it shares the relay's two cores, so it must cost the
relay as little CPU as it can: served by gunicorn and Flask it spent 1.7-2.6 ms per delivery, a fifth of
the end-to-end stack's budget (docs/scaling.md). bench/fanout keeps its gunicorn subscriber: there the
plain httpx loop it compares with waits on every answer, so a faster subscriber favours the loop.

    python -m bench.subscriber PORT ARRIVALS_FILE
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app.cli.devstack import wait_until_up

ROOT = Path(__file__).resolve().parent.parent

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out) -> None:
    try:
        while request_line := await reader.readline():
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            arrived = time.time()
            if request_line.startswith(b"POST"):
                out.write(f"{json.loads(body)['data']['task_id']} {arrived}\n")
                out.flush()  # one small append per request: bench/scale reads whole lines only
            writer.write(_NO_CONTENT)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int, path: str) -> None:
    with open(path, "a") as out:
        server = await asyncio.start_server(lambda r, w: _serve(r, w, out), "127.0.0.1", port)
        async with server:
            await server.serve_forever()


def start(port: int, arrivals: Path) -> subprocess.Popen:
    """The subscriber in a process of its own, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.subscriber", str(port), str(arrivals)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wait_until_up(f"http://127.0.0.1:{port}/")
    return process


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
