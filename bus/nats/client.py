"""The NATS connection under `NatsBus`: connecting, mapping errors once, and batched requests.

Every nats-py error (and socket error) becomes `BusUnavailable` in one place, `NatsErrors`, and every
message names the server without its password. Requests go out in batches through one inbox
subscription: a batch is written with one flush and its replies are awaited together, so a hundred
publishes, claims or acknowledgements cost one round trip, not a hundred.

Connections: a lost server is retried a few times (a restart or a blip is ridden out); after that the
client closes, and the next operation connects afresh, failing with `BusUnavailable` within about a
second while the server is gone, the way the Redis backend behaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from engine.errors import BadRequest, BusUnavailable

log = logging.getLogger("roundtable.bus")

CONNECT_TIMEOUT_S = 2
RECONNECT_WAIT_S = 0.25
RECONNECT_ATTEMPTS = 3
REQUEST_TIMEOUT_S = 5.0
#: How long an operation waits for a reconnection in progress before reporting the bus unavailable.
RECONNECT_GRACE_S = 1.0
#: How long past its expiry (or, without one, after it was sent) a pull that has not ended is given up.
PULL_GRACE_S = 0.5

Request = tuple[str, bytes, Mapping[str, str] | None]
Route = Callable[[Msg | None], None]


class ApiError(Exception):
    """A JetStream API error reply: the server answered, and said no."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, error {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class NoResponders(Exception):
    """Nobody serves the subject: the stream or the consumer it names does not exist."""


class _Lost(Exception):
    """The connection went away while a reply was awaited."""


#: JetStream error codes this backend acts on.
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
STREAM_NAME_IN_USE = 10058
WRONG_LAST_SEQUENCE = 10071


class NatsErrors:
    """Re-raises nats-py, socket and timeout errors as `BusUnavailable`, naming the server.

    A payload over the server's limit is the caller's mistake, so it becomes `BadRequest`.
    """

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, nats.errors.MaxPayloadError):
            raise BadRequest(
                f"message too large for nats at {self._where}; raise the server's max_payload or send less"
            ) from exc
        if isinstance(exc, _Lost):
            raise BusUnavailable(f"nats at {self._where} failed: the connection was lost") from exc
        if isinstance(exc, nats.errors.Error | OSError | asyncio.TimeoutError | ApiError):
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise BusUnavailable(f"nats at {self._where} failed: {detail}") from exc


def status_of(msg: Msg) -> str | None:
    """The status code of a status message (404 no messages, 408 timeout, 503 no responders...)."""
    headers = msg.headers
    if headers and not msg.data:
        return headers.get("Status")
    return None


class NatsLink:
    """One nats-py connection with a request multiplexer and pull fetches."""

    def __init__(self, url: str, where: str, *, request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._url = url
        self.where = where
        self.errors = NatsErrors(where)
        self._timeout = request_timeout_s
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        self._prefix = ""
        self._routes: dict[str, Route] = {}
        self._tokens = itertools.count()
        self._connected = asyncio.Event()
        self._last_error: BaseException | None = None
        #: The last failed connection attempt: when it ended, and how.
        self._failed: tuple[float, str] | None = None
        self._closed = False

    # --- connection -------------------------------------------------------------------------------

    async def connection(self) -> Client:
        """The live client, connecting (or reconnecting after a give-up) when needed."""
        nc = self._nc
        if nc is not None and nc.is_connected:
            return nc
        if nc is not None and nc.is_reconnecting:
            try:
                await asyncio.wait_for(self._connected.wait(), RECONNECT_GRACE_S)
            except TimeoutError:
                raise BusUnavailable(f"nats at {self.where} failed: reconnecting, not answering") from None
            return nc
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        async with self._lock:
            if self._nc is not None and self._nc.is_connected:
                return self._nc
            if self._closed:
                raise BusUnavailable(f"the bus on nats at {self.where} is closed")
            # An attempt that failed while this caller queued answers for it too: otherwise every loop
            # of every agent would try in turn, each for a whole attempt, and a dead server would take
            # each operation longer to report the more of them there are.
            if self._failed is not None and self._failed[0] >= arrived:
                raise BusUnavailable(self._failed[1])
            try:
                self._nc = await self._connect()
            except BusUnavailable as exc:
                self._failed = (loop.time(), str(exc))
                raise
            self._failed = None
            return self._nc

    async def _connect(self) -> Client:
        self._last_error = None
        try:
            nc = await nats.connect(
                self._url,
                name="roundtable",
                connect_timeout=CONNECT_TIMEOUT_S,
                reconnect_time_wait=RECONNECT_WAIT_S,
                max_reconnect_attempts=RECONNECT_ATTEMPTS,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_disconnected,
                skip_subject_validation=True,  # subjects are built from escaped parts (`bus.nats.names`)
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            cause = self._last_error or exc
            detail = " ".join(str(cause).split()) or type(cause).__name__
            raise BusUnavailable(f"nats at {self.where} failed: {detail}") from exc
        self._prefix = nc.new_inbox()
        with self.errors:
            await nc.subscribe(f"{self._prefix}.*", cb=self._route)
        self._connected.set()
        return nc

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        log.debug("roundtable.nats_error where=%s error=%s", self.where, exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        routes, self._routes = self._routes, {}
        for route in routes.values():
            route(None)

    async def _on_reconnected(self) -> None:
        self._connected.set()
        log.info("roundtable.nats_reconnected where=%s", self.where)

    async def close(self) -> None:
        self._closed = True
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with self.errors:
                await nc.close()

    # --- requests ---------------------------------------------------------------------------------

    def _token(self) -> str:
        return f"{self._prefix}.{next(self._tokens)}"

    async def _route(self, msg: Msg) -> None:
        route = self._routes.get(msg.subject)
        if route is not None:
            route(msg)

    async def request_many(self, requests: Sequence[Request]) -> list[Msg]:
        """Send requests in one write and wait for every reply; replies in request order.

        A "no responders" reply is returned as it is (see `status_of`), for the caller to act on.
        """
        return await self.confirm_many([[request] for request in requests])

    async def confirm_many(self, batches: Sequence[Sequence[Request]]) -> list[Msg]:
        """Send batches in one write; only the last message of each batch asks for a reply.

        The server handles one connection's messages to one stream (or one consumer's
        acknowledgements) in order, so the reply to a batch's last message tells that all of the
        batch was applied: one reply per batch instead of one per message. Returns those replies.
        """
        batches = [batch for batch in batches if batch]
        if not batches:
            return []
        nc = await self.connection()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Msg]] = []
        tokens: list[str] = []
        with self.errors:
            try:
                for batch in batches:
                    for subject, payload, headers in batch[:-1]:
                        await nc.publish(subject, payload, headers=dict(headers) if headers else None)
                    subject, payload, headers = batch[-1]
                    token = self._token()
                    future: asyncio.Future[Msg] = loop.create_future()
                    self._routes[token] = _resolver(future)
                    tokens.append(token)
                    futures.append(future)
                    await nc.publish(
                        subject, payload, reply=token, headers=dict(headers) if headers else None
                    )
                _, pending = await asyncio.wait(futures, timeout=self._timeout)
                if pending:
                    raise nats.errors.TimeoutError
                return [f.result() for f in futures]
            finally:
                for token in tokens:
                    self._routes.pop(token, None)
                for future in futures:
                    if not future.done():
                        future.cancel()

    async def request(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None) -> Msg:
        [reply] = await self.request_many([(subject, payload, headers)])
        return reply

    async def api_many(
        self, calls: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any] | ApiError]:
        """JetStream API calls (`STREAM.INFO.<name>`...) in one round trip; each answer or its error."""
        replies = await self.request_many(
            [(f"$JS.API.{name}", json.dumps(body).encode(), None) for name, body in calls]
        )
        return [_api_answer(reply, self.where) for reply in replies]

    async def api(self, name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        [answer] = await self.api_many([(name, body or {})])
        if isinstance(answer, ApiError):
            raise answer
        return answer

    async def publish_many(self, messages: Sequence[Request]) -> None:
        """Fire-and-forget publishes, then one PING/PONG so that the server has read them all."""
        if not messages:
            return
        nc = await self.connection()
        with self.errors:
            for subject, payload, headers in messages:
                await nc.publish(subject, payload, headers=dict(headers) if headers else None)
            await nc.flush(timeout=int(self._timeout) or 1)

    # --- pull fetches -----------------------------------------------------------------------------

    async def fetch(self, stream: str, consumer: str, batch: int, wait_ms: int) -> list[Msg]:
        """Up to `batch` messages from a pull consumer; with `wait_ms`, waits that long for the first.

        JetStream's one-shot pull (`no_wait`, with `expires` to wait) returns as soon as any message
        is there. Deliveries carry their own subject, so each pull has its own subscription: when the
        caller gives up or is cancelled it unsubscribes, and the server drops the request instead of
        delivering to nobody.

        JetStream 2.9 does not always end a pull: one without expiry can go unanswered while its
        cached count of pending entries is off (trimming can cause that), and an expired one can be
        dropped silently when an entry arrives just as it expires. So a pull that has not ended
        `PULL_GRACE_S` after it should have is taken as over, with what it brought.

        Raises:
            NoResponders: the consumer (or its stream) does not exist.
        """
        nc = await self.connection()
        queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        got: list[Msg] = []
        body: dict[str, Any] = {"batch": batch, "no_wait": True}
        if wait_ms:
            body["expires"] = wait_ms * 1_000_000

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg)

        with self.errors:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, cb=deliver)
            self._routes[inbox] = queue.put_nowait  # only for the connection-lost signal
            try:
                request = json.dumps(body).encode()
                await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", request, reply=inbox)
                if not await self._collect(queue, got, batch, wait_ms / 1000 + PULL_GRACE_S):
                    log.debug("roundtable.nats_pull_unanswered stream=%s group=%s", stream, consumer)
            finally:
                self._routes.pop(inbox, None)
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        return got

    async def _collect(
        self, queue: asyncio.Queue[Msg | None], got: list[Msg], batch: int, within_s: float
    ) -> bool:
        """Gather a pull's messages until `batch` came or the pull ended; False if it never said so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while len(got) < batch:
            try:
                msg = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False
            if msg is None:
                raise _Lost
            status = status_of(msg)
            if status is None:
                got.append(msg)
            elif status == "503" or (
                status == "409" and "Deleted" in (msg.headers or {}).get("Description", "")
            ):
                raise NoResponders  # the consumer (or its stream) does not exist, or was deleted
            elif status != "100":  # 404 no messages, 408 done or expired, other 409s: the pull is over
                return True
        return True

    # --- wakeups ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def wakeups(self, subjects: Sequence[str]) -> AsyncIterator[Wakeups]:
        """Core subscriptions that say when something is published on any of `subjects`."""
        nc = await self.connection()
        wakeups = Wakeups()
        subs = []
        token = self._token()
        self._routes[token] = wakeups.lost
        try:
            with self.errors:
                for name in subjects:

                    async def woke(msg: Msg) -> None:
                        wakeups.note(msg.subject)

                    subs.append(await nc.subscribe(name, cb=woke))
            yield wakeups
        finally:
            self._routes.pop(token, None)
            for sub in subs:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()


class Wakeups:
    """Which subjects saw a publish since the last `take`, and a way to wait for the next one."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._subjects: set[str] = set()
        self._lost = False

    def note(self, subject: str) -> None:
        self._subjects.add(subject)
        self._event.set()

    def lost(self, _: Msg | None) -> None:
        self._lost = True
        self._event.set()

    def take(self) -> set[str]:
        taken, self._subjects = self._subjects, set()
        self._event.clear()
        return taken

    async def wait(self, within_s: float) -> bool:
        """Wait up to `within_s` seconds for a publish; False when none came."""
        try:
            await asyncio.wait_for(self._event.wait(), within_s)
        except TimeoutError:
            return False
        if self._lost:
            raise _Lost
        return True


def _resolver(future: asyncio.Future[Msg]) -> Route:
    def resolve(msg: Msg | None) -> None:
        if future.done():
            return
        if msg is None:
            future.set_exception(_Lost())
        else:
            future.set_result(msg)

    return resolve


def _api_answer(reply: Msg, where: str) -> dict[str, Any] | ApiError:
    if status_of(reply) == "503":
        return ApiError(503, 0, f"JetStream is not enabled at nats at {where}; start nats-server with -js")
    try:
        answer: dict[str, Any] = json.loads(reply.data)
    except ValueError:
        return ApiError(500, 0, f"unreadable JetStream reply {reply.data[:80]!r}")
    error = answer.get("error")
    if error:
        return ApiError(
            int(error.get("code", 500)), int(error.get("err_code", 0)), str(error.get("description"))
        )
    return answer
