"""`polysync apikey` and `polysync serve` in subprocesses: keys, roles, health, the web UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

POLYSYNC = str(Path(sys.executable).with_name("polysync"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYSYNC, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_keys_roles_and_the_served_api(tmp_path: Path) -> None:
    env = {**os.environ, "POLYSYNC_HOME": str(tmp_path)}
    env.pop("POLYSYNC_DATABASE_URL", None)
    viewer = json.loads(cli(env, "apikey", "create", "dash", "--role", "viewer", "--json").stdout)
    bad_role = cli(env, "apikey", "create", "x", "--role", "root")
    assert bad_role.returncode == 2
    listed = json.loads(cli(env, "apikey", "list", "--json").stdout)
    assert [(k["name"], k["role"]) for k in listed] == [("dash", "viewer")]
    assert viewer["key"] not in json.dumps(listed)  # only the prefix is kept in clear
    port = free_port()
    server = subprocess.Popen(
        [POLYSYNC, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {viewer['key']}"}
        assert httpx.get(f"{base}/api/v1/runs", headers=headers).json() == []
        assert httpx.get(f"{base}/api/v1/runs").status_code == 401
        created = httpx.post(
            f"{base}/api/v1/platforms",
            headers=headers,
            json={
                "name": "p",
                "workspace_url": "https://adb-1.1.azuredatabricks.net",
                "auth": {"method": "pat", "token": "env:X"},
            },
        )
        assert created.status_code == 403  # a viewer cannot manage platforms
        assert created.headers["content-type"].startswith("application/problem+json")
        assert cli(env, "apikey", "revoke", viewer["key"][:12]).returncode == 0
        assert httpx.get(f"{base}/api/v1/runs", headers=headers).status_code == 401
        assert "Sign in" in httpx.get(f"{base}/sign-in").text
    finally:
        server.terminate()
        server.wait(timeout=15)
