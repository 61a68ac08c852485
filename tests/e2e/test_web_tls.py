"""The dashboard under TLS: the HTTP listener serves HTTPS with the gRPC
port's certificate, its cookies are Secure, HSTS is sent; with a client CA
it asks browsers for a certificate as the gRPC port asks clients."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.e2e.test_security_tls import serve, tls_env
from tests.support.certs import Pki, make_pki
from tests.support.database import temporary_database
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import CSRF, dashboard_url

pytestmark = pytest.mark.any_database


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, *, mutual: bool
) -> Iterator[ServerProcess]:
    with temporary_database(tmp_path_factory.mktemp("web-tls")) as database_url:
        yield from serve(
            database_url, {**tls_env(pki, mutual=mutual), "ORCHESTRATOR_HTTP_PORT": "0"}
        )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    yield from _server(tmp_path_factory, pki, mutual=False)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    yield from _server(tmp_path_factory, pki, mutual=True)


def _connection(server: ServerProcess, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    url = urllib.parse.urlsplit(dashboard_url(server))
    assert url.scheme == "https" and url.hostname and url.port
    return http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=30)


def _trusting(pki: Pki, client: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    if client:
        context.load_cert_chain(str(pki.client.cert_file), str(pki.client.key_file))
    return context


def _cookie(reply: http.client.HTTPResponse, name: str) -> str:
    cookies = reply.headers.get_all("set-cookie") or []
    return next(c for c in cookies if c.startswith(f"{name}="))


def test_sign_in_over_https_sets_a_secure_cookie(tls_server: ServerProcess, pki: Pki) -> None:
    connection = _connection(tls_server, _trusting(pki))
    try:
        connection.request("GET", "/login")
        page = connection.getresponse()
        body = page.read().decode()
        assert page.status == 200
        assert page.headers["strict-transport-security"].startswith("max-age=")
        sign_in_cookie = _cookie(page, "orchestrator_sign_in")
        assert "Secure" in sign_in_cookie
        match = CSRF.search(body)
        assert match
        form = urllib.parse.urlencode(
            {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "csrf_token": match[1]}
        )
        connection.request(
            "POST",
            "/login",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": sign_in_cookie.split(";", 1)[0],
            },
        )
        reply = connection.getresponse()
        reply.read()
        assert reply.status == 303
        session = next(
            c
            for c in reply.headers.get_all("set-cookie") or []
            if c.startswith("orchestrator_session=")
        )
        assert "Secure" in session and "HttpOnly" in session
    finally:
        connection.close()


def test_mutual_tls_refuses_a_browser_without_a_certificate(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    refused = _connection(mtls_server, _trusting(pki))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        try:
            refused.request("GET", "/login")
            refused.getresponse().read()
        finally:
            refused.close()
    served = _connection(mtls_server, _trusting(pki, client=True))
    try:
        served.request("GET", "/login")
        assert served.getresponse().status == 200
    finally:
        served.close()
