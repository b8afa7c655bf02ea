"""`polysync vaults` in subprocesses against `polysync emulator serve --tls` (D15): register the
emulated Key Vault, test it, run a job whose platform token is vault://demo-kv/databricks-token,
rotate that token in the vault, and run again."""

from __future__ import annotations

import json
import os
import queue
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

POLYSYNC = str(Path(sys.executable).with_name("polysync"))
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_CLIENT = "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40"
OLD = "dapi-demo-token-0000000000000000"
NEW = "dapi5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tls_dir = tmp_path_factory.mktemp("tls")
    process = subprocess.Popen(
        [
            POLYSYNC,
            "emulator",
            "serve",
            "--workspace",
            "demo",
            "--port",
            "0",
            "--speed",
            "200",
            "--tls",
            "--tls-dir",
            str(tls_dir),
        ],
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    url = None
    while url is None:
        line = lines.get(timeout=60)
        assert line is not None, f"the emulator exited with {process.wait()}"
        match = re.search(r"serving \d+ jobs at (https://\S+)", line)
        url = match.group(1) if match else None
    try:
        yield url, tls_dir / "ca.pem"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_platform_token_from_the_emulated_vault(
    tls_emulator: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = tls_emulator
    home = tmp_path / "home"
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))
        },
        "POLYSYNC_HOME": str(home),
        "KV_SP_SECRET": "demo-entra-client-secret",
        "COLUMNS": "200",
    }
    env.pop("POLYSYNC_DATABASE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POLYSYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    added = cli(
        "vaults", "add", "demo-kv", "--url", url, "--auth", "service-principal",
        "--tenant-id", TENANT, "--client-id", SP_CLIENT, "--client-secret", "env:KV_SP_SECRET",
        "--authority-host", url, "--disable-instance-discovery", "--ca-bundle", str(ca),
        "--cache-ttl", "0", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["reference"] == "vault://demo-kv/SECRET"
    tested = cli("vaults", "test", "demo-kv", "--secret", "databricks-token", "--json")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert json.loads(tested.stdout)["ok"] is True
    missing = cli("vaults", "test", "demo-kv", "--secret", "nope")
    assert missing.returncode == 3
    assert "SecretNotFound" in missing.stderr
    platform = cli(
        "platform", "add", "demo", "--url", url, "--token", "vault://demo-kv/databricks-token",
        "--ca-bundle", str(ca),
    )  # fmt: skip
    assert platform.returncode == 0, platform.stderr
    imported = cli("import", "demo", "--job-id", "203947718265530")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    first = cli("run", "vacuum-delta-tables", "--platform", "demo", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr

    # Rotation: the workspace accepts NEW, the vault holds it, OLD is revoked.
    verify = ssl.create_default_context(cafile=str(ca))
    for path, body in (
        ("tokens", {"add": [NEW]}),
        ("vault/secrets/databricks-token", {"value": NEW}),
        ("tokens", {"revoke": [OLD]}),
    ):
        method = "PUT" if path.startswith("vault") else "POST"
        answer = httpx.request(method, f"{url}/emulator/{path}", json=body, verify=verify)
        assert answer.status_code == 200, answer.text
    second = cli("run", "vacuum-delta-tables", "--platform", "demo", "--wait")
    assert second.returncode == 0, second.stdout + second.stderr
    in_use = cli("vaults", "remove", "demo-kv", "--yes")
    assert in_use.returncode == 2
    shown = cli("platform", "show", "demo", "--json").stdout + cli("runs", "list", "--json").stdout
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("polysync.db"))
    for value in (OLD, NEW, "demo-entra-client-secret"):
        assert value not in shown
        assert value.encode() not in stored
        assert value not in first.stdout + first.stderr + second.stdout + second.stderr
