"""Serving for tests: the throwaway CA and certificate, HTTPS and HTTP with uvicorn, failures."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from polysync.emulator.serving import run_in_thread, running_server
from polysync.emulator.tls import TlsFiles, make_self_signed_cert


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello over {request.url.scheme}")


APP = Starlette(routes=[Route("/hello", hello)])


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_files_keys_and_extensions(tmp_path: Path) -> None:
    files = make_self_signed_cert(tmp_path / "certs", hostnames=("localhost", "127.0.0.1", "::1"))
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]  # the CA's key is never written
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(files.ca_path.read_bytes())
    server = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_rewriting_keeps_the_key_private(tmp_path: Path) -> None:
    (tmp_path / "server-key.pem").write_text("old")
    (tmp_path / "server-key.pem").chmod(0o644)
    files = make_self_signed_cert(tmp_path)
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    assert files.key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_at_least_one_hostname(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostname"):
        make_self_signed_cert(tmp_path, hostnames=())


async def test_https_with_the_ca_and_refused_without(tls: TlsFiles) -> None:
    trusted = ssl.create_default_context(cafile=str(tls.ca_path))
    async with running_server(APP, tls=tls) as base_url:
        assert base_url.startswith("https://127.0.0.1:")
        port = base_url.rsplit(":", 1)[1]
        async with httpx.AsyncClient(verify=trusted) as http:
            assert (await http.get(f"{base_url}/hello")).text == "hello over https"
            # The DNS name in the certificate works as well as the IP address.
            assert (await http.get(f"https://localhost:{port}/hello")).status_code == 200
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{base_url}/hello")


def test_run_in_thread_serves_until_stopped(tls: TlsFiles) -> None:
    base_url, stop = run_in_thread(APP, tls=tls)
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(tls.ca_path))) as http:
            assert http.get(f"{base_url}/hello").text == "hello over https"
    finally:
        stop()
    with httpx.Client(verify=False) as http, pytest.raises(httpx.ConnectError):  # noqa: S501
        http.get(f"{base_url}/hello")


async def test_plain_http_server() -> None:
    async with running_server(APP) as base_url, httpx.AsyncClient() as http:
        assert base_url.startswith("http://")
        assert (await http.get(f"{base_url}/hello")).text == "hello over http"


# TEST-NET-3 (RFC 5737): never assigned to a local interface, so binding to it fails.
UNBINDABLE_HOST = "203.0.113.1"


async def test_a_server_that_cannot_start_raises() -> None:
    with pytest.raises(RuntimeError, match="could not start"):
        async with running_server(APP, host=UNBINDABLE_HOST):
            pass


def test_a_thread_server_that_cannot_start_raises() -> None:
    with pytest.raises(RuntimeError, match="could not start"):
        run_in_thread(APP, host=UNBINDABLE_HOST)
