"""Client connections to the server, for the worker SDK, the client SDK and
the CLI alike: plain text by default, TLS when told to.

Clients read, besides ORCHESTRATOR_URL and ORCHESTRATOR_TOKEN:
ORCHESTRATOR_TLS (`true`: TLS with the system's trusted roots),
ORCHESTRATOR_TLS_CA_FILE (TLS trusting this CA), and
ORCHESTRATOR_TLS_CLIENT_CERT_FILE with ORCHESTRATOR_TLS_CLIENT_KEY_FILE
(a client certificate, for servers that require mutual TLS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

DEFAULT_URL = "localhost:50051"
# The server accepts messages up to this size; a larger one would be refused.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ClientTls:
    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def _read(variable: str) -> bytes | None:
    path = os.environ.get(variable, "").strip()
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}={path!r}: {exc.strerror}") from None


def tls_from_env() -> ClientTls | None:
    """The TLS settings the environment asks for, or None for plain text.
    ValueError names a variable whose file cannot be read."""
    ca = _read("ORCHESTRATOR_TLS_CA_FILE")
    cert = _read("ORCHESTRATOR_TLS_CLIENT_CERT_FILE")
    key = _read("ORCHESTRATOR_TLS_CLIENT_KEY_FILE")
    if (cert is None) != (key is None):
        raise ValueError(
            "ORCHESTRATOR_TLS_CLIENT_CERT_FILE and ORCHESTRATOR_TLS_CLIENT_KEY_FILE go together"
        )
    wanted = os.environ.get("ORCHESTRATOR_TLS", "").strip().lower() in _TRUE
    if not (wanted or ca or cert):
        return None
    return ClientTls(ca, cert, key)


def url_from_env() -> str:
    return os.environ.get("ORCHESTRATOR_URL", "").strip() or DEFAULT_URL


def open_channel(url: str, user_agent: str, tls: ClientTls | None = None) -> aio.Channel:
    """A channel of its own (local subchannel pool): one reused after its
    server went away, or the process-wide pool, retries on gRPC's schedule
    (1 s growing to 120 s) and would override the caller's own backoff.
    Keepalive pings every 20 s notice a server that vanished without closing
    the connection (the server allows one every 10 s)."""
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.primary_user_agent", user_agent),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if tls is None:
        return aio.insecure_channel(url, options=options)
    return aio.secure_channel(url, tls.credentials(), options=options)


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
