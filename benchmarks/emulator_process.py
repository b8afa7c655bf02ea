"""The emulator as a subprocess on a free port, shared by the benchmarks."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(*options: str) -> tuple[subprocess.Popen[bytes], int]:
    """`polysync emulator serve --workspace demo` with `options`; the process and its port."""
    port = free_port()
    exe = Path(sys.executable).with_name("polysync")
    process = subprocess.Popen(
        [str(exe), "emulator", "serve", "--workspace", "demo", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


async def wait_ready(client: httpx.AsyncClient) -> None:
    """Bounded wait until the emulator answers its health check."""
    for _ in range(200):
        try:
            if (await client.get("/emulator/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("emulator did not start")
