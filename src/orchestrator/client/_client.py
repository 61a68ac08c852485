"""The async client: one server, one identity, every RPC as a typed method."""

from __future__ import annotations

import os

from orchestrator.channel import DEFAULT_URL, ClientTls, tls_from_env
from orchestrator.client import _convert, _status
from orchestrator.client._accounts import Tokens, Users
from orchestrator.client._credentials import Credentials
from orchestrator.client._retry import STREAMS, RetryPolicy
from orchestrator.client._runs import Runs
from orchestrator.client._schedules import Schedules
from orchestrator.client._session import Session, SessionFile
from orchestrator.client._status import ServerStatus
from orchestrator.client._tasks import Tasks
from orchestrator.client._transport import DEFAULT_TIMEOUT_SECONDS, Transport
from orchestrator.client._values import ConnectedWorker, Health, WhoAmI
from orchestrator.client._workflows import Workflows
from orchestrator.proto import auth_pb2, health_pb2, workers_pb2


class Client:
    """An async client of one Orchestrator server.

        async with Client.from_env() as client:      # as the CLI would
            task = await client.tasks.run("echo", {"greeting": "hi"})

        async with Client("127.0.0.1:50051") as client:
            await client.login("admin", "orchestrator-dev")
            async for event in client.tasks.watch(task_id):
                ...

    Failed calls raise the server's own `orchestrator.errors` classes.
    Access tokens are refreshed before they expire, or once when the server
    refuses one; calls that are safe to repeat are retried with backoff
    while the server is unreachable (`retry`); watch streams reconnect and
    resume where they left off.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        session: Session | None = None,
        session_file: SessionFile | None = None,
        tls: ClientTls | None = None,
        retry: RetryPolicy | None = None,
        stream_retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`url` defaults to the session's, else $ORCHESTRATOR_URL, else
        localhost:50051. `token` is an API token (never refreshed); a
        `session` comes from `login()` or a `session_file`, which also keeps
        each refreshed session. TLS: `tls`, else as the environment says
        (see `orchestrator.channel`; ValueError for an unreadable file).
        `retry` paces repeated calls while the server is unreachable (30 s
        by default), `stream_retry` reconnecting streams (60 s); `timeout`
        bounds each call, in seconds."""
        url = url or (session.url if session else None) or _env_url() or DEFAULT_URL
        self._credentials = Credentials(token=token, session=session, session_file=session_file)
        self._transport = Transport(
            url,
            credentials=self._credentials,
            tls=tls if tls is not None else tls_from_env(),
            retry=retry or RetryPolicy(),
            stream_retry=stream_retry or STREAMS,
            timeout=timeout,
        )
        self.tasks = Tasks(self._transport)
        self.runs = Runs(self._transport)
        self.workflows = Workflows(self._transport, self.runs)
        self.schedules = Schedules(self._transport, self.workflows)
        self.users = Users(self._transport)
        self.tokens = Tokens(self._transport)

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        *,
        session_file: SessionFile | None = None,
        retry: RetryPolicy | None = None,
        stream_retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Client:
        """Where and who as the CLI decides: `url`, else $ORCHESTRATOR_URL,
        else the saved session's server; $ORCHESTRATOR_TOKEN if set, else the
        session `orchestrator login` saved for that server, else nobody."""
        session_file = session_file or SessionFile()
        saved = session_file.load()
        url = url or _env_url() or (saved.url if saved else None) or DEFAULT_URL
        token = os.environ.get("ORCHESTRATOR_TOKEN", "").strip() or None
        session = saved if not token and saved is not None and saved.url == url else None
        return cls(
            url,
            token=token,
            session=session,
            # Written only by a login or a refresh of the session.
            session_file=session_file,
            retry=retry,
            stream_retry=stream_retry,
            timeout=timeout,
        )

    @property
    def url(self) -> str:
        return self._transport.url

    @property
    def session(self) -> Session | None:
        """The current login session (tokens included), if any."""
        return self._credentials.session

    @property
    def has_credentials(self) -> bool:
        return self._credentials.present

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sessions --------------------------------------------------------------

    async def login(self, username: str, password: str) -> Session:
        """Log in; later calls use (and refresh) this session."""
        request = auth_pb2.LoginRequest(username=username, password=password)
        # A repeated login only opens one more session: safe to retry.
        reply = await self._transport.unary(
            lambda s: s.auth.Login, request, idempotent=True, authenticated=False
        )
        session = Session.issued(
            self.url,
            reply.user.username or username,
            reply.access_token,
            reply.refresh_token,
            reply.expires_in,
        )
        self._credentials.use(session)
        return session

    async def refresh(self) -> Session:
        """A new access token now (it happens by itself when needed)."""
        session = self._credentials.session
        if session is None:
            raise RuntimeError("not logged in: there is no session to refresh")
        return await self._credentials.renew(session.access_token, self._transport.exchange)

    async def logout(self) -> None:
        """End the session on the server and forget it here (even if the
        server cannot be told)."""
        session = self._credentials.session
        try:
            if session is not None:
                request = auth_pb2.LogoutRequest(refresh_token=session.refresh_token)
                await self._transport.unary(lambda s: s.auth.Logout, request, idempotent=True)
        finally:
            self._credentials.forget()

    async def whoami(self) -> WhoAmI:
        reply = await self._transport.unary(
            lambda s: s.auth.WhoAmI, auth_pb2.WhoAmIRequest(), idempotent=True
        )
        return _convert.whoami(reply)

    # -- the server ------------------------------------------------------------

    async def health(self) -> Health:
        """The server's health (no credentials needed)."""
        reply = await self._transport.unary(
            lambda s: s.health.Check,
            health_pb2.CheckRequest(),
            idempotent=True,
            authenticated=False,
        )
        return _convert.health(reply)

    async def workers(self) -> tuple[ConnectedWorker, ...]:
        """The workers connected to this replica (an admin sees all)."""
        reply = await self._transport.unary(
            lambda s: s.workers.ListWorkers, workers_pb2.ListWorkersRequest(), idempotent=True
        )
        return tuple(_convert.connected_worker(w) for w in reply.workers)

    async def status(self, *, oldest: int = 10) -> ServerStatus:
        """Replicas, this replica's workers, queue depths, and why the
        `oldest` (at most 100) longest-waiting tasks wait. Admins only."""
        return await _status.read(self._transport, oldest)


def _env_url() -> str | None:
    return os.environ.get("ORCHESTRATOR_URL", "").strip() or None
