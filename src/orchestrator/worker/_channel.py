"""The connection to the server, in one place so TLS can be added here."""

from __future__ import annotations

from grpc import aio

from orchestrator import __version__

# The server accepts messages up to this size; a larger input would not
# have been accepted from its client either.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def open_channel(url: str) -> aio.Channel:
    """A channel to `url` (host:port). Plain text for now.

    A fresh channel per connection attempt, with subchannels of its own: a
    channel reused after its server went away, or the process-wide pool of
    subchannels that channels share by default, retries on gRPC's own
    schedule (1s growing to 120s), which would override the worker's
    shorter backoff.
    """
    return aio.insecure_channel(
        url,
        options=[
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.primary_user_agent", f"orchestrator-worker/{__version__}"),
        ],
    )


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
