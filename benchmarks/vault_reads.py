"""Secret Vault reads (D15): what a `vault://` token costs a Databricks call.

The emulator's Key Vault is served over TLS on loopback; a registered vault (service principal)
is read with azure-keyvault-secrets' aio client through Polysync's resolver. Rows: a cold read
(sign-in + GET, a new client), warm reads past the cache (`fresh=True`, what a 401/403 triggers,
and each read after the TTL), and cached resolves (what every Databricks call within the TTL
costs). Prints one table row per mode.

    .venv/bin/python benchmarks/vault_reads.py [--reads 200] [--cached 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from polysync.clock import ManualClock
from polysync.domain.records import SecretVault
from polysync.emulator.app import create_app
from polysync.emulator.serving import run_in_thread
from polysync.emulator.spec import load_workspace
from polysync.emulator.tls import make_self_signed_cert
from polysync.secrets import SecretReference, SecretScope
from polysync.vaults.resolver import VaultSecrets

SP_VARIABLE = "POLYSYNC_BENCH_KV_SECRET"


async def measure(url: str, ca: Path, reads: int, cached: int) -> list[tuple[str, int, float]]:
    spec = load_workspace("demo")
    sp = spec.auth.service_principals[0]
    os.environ[SP_VARIABLE] = sp.client_secret.get_secret_value()
    now = datetime.now(UTC)
    vault = SecretVault(
        1,
        "demo-kv",
        "azure-key-vault",
        url,
        {
            "method": "entra_service_principal",
            "tenant_id": sp.tenant_id,
            "client_id": sp.client_id,
            "client_secret": f"env:{SP_VARIABLE}",
            "authority_host": url,
            "disable_instance_discovery": True,
        },
        "",
        {"tls_ca_bundle": str(ca), "cache_ttl_s": 60},
        now,
        now,
    )

    async def find(name: str) -> SecretVault:
        return vault

    clock = ManualClock()
    resolver = VaultSecrets(find, clock, SecretScope())
    reference = SecretReference.parse(
        "vault://demo-kv/databricks-token", SecretScope(vaults=resolver)
    )
    rows = []
    try:
        start = time.perf_counter()
        await reference.resolve_async()
        rows.append(("cold read (sign-in + GET)", 1, time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(reads):
            await reference.resolve_async(fresh=True)
        rows.append(("read past the cache", reads, time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(cached):
            await reference.resolve_async()
        rows.append(("cached resolve", cached, time.perf_counter() - start))
    finally:
        await resolver.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--cached", type=int, default=100_000)
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith(("AZURE_", "IDENTITY_", "MSI_"))]:
        del os.environ[name]
    with tempfile.TemporaryDirectory() as directory:
        tls = make_self_signed_cert(directory)
        url, stop = run_in_thread(create_app(load_workspace("demo")), tls=tls)
        try:
            rows = asyncio.run(measure(url, tls.ca_path, args.reads, args.cached))
        finally:
            stop()
    print(f"{'mode':<28} {'count':>8} {'total s':>9} {'per call':>12}")
    for mode, count, total_s in rows:
        per = total_s / count
        shown = f"{per * 1e3:.2f} ms" if per >= 1e-3 else f"{per * 1e6:.1f} µs"
        print(f"{mode:<28} {count:>8} {total_s:>9.3f} {shown:>12}")


if __name__ == "__main__":
    main()
