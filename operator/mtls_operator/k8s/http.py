"""A lean HTTP/1.1 client for the API server's request-and-answer calls: kept-alive connections, no more.

Every certificate costs at least one request (its Secret's create). aiohttp's client spends about 125
microseconds of CPU on one (its request and response objects, header multidicts, URL parsing, cookie,
tracing and timeout machinery); what the operator needs of HTTP here is a request line, a few headers,
a JSON body and an answer read by its Content-Length or its chunks: about 40 microseconds. Watches
(one long stream each) stay with aiohttp.

What it speaks: HTTP/1.1 over TCP or TLS (the configuration's context and server name), persistent
connections (reused while the server keeps them open, closed after ``Connection: close``, dropped
after ``KEEPALIVE`` seconds idle), answers framed by Content-Length, ``Transfer-Encoding: chunked``
or the end of the connection; no compression is asked for, so none is answered. A request on a
reused connection that the server had closed before answering is sent once more on a new connection
when it is a GET (safe to repeat); anything else fails as a retryable error, as with any client.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

# Seconds an idle connection is kept for reuse (the API server keeps them longer).
KEEPALIVE = 60.0
# An answer's head (status line and headers) larger than this is refused, not buffered forever.
_MAX_HEAD = 64 * 1024


class HTTPError(OSError):
    """The connection failed, or the server's answer is not HTTP/1.1 as this client reads it."""


class Answer:
    __slots__ = ("body", "reason", "status")

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.body = body


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its answer parsed as the bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # Whether it served an answer before (a server may close an idle connection as a request leaves).
        self.reused = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        # The answer being read: its status line, how its body is framed, whether the connection stays.
        self._head: tuple[int, str] | None = None
        self._length: int | None = None
        self._chunked = False
        self._until_close = False
        self._keep = True
        self._body = bytearray()
        self.received = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._until_close and self._head is not None and exc is None:
            waiter.set_result(Answer(*self._head, bytes(self._body)))  # an answer framed by the connection's end
        else:
            waiter.set_exception(HTTPError(f"the connection was closed{f': {exc}' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(HTTPError("the server sent bytes nobody asked for"))
            return
        self.received = True
        self._buffer += data
        try:
            done = self._parse()
        except HTTPError as exc:
            self._fail(exc)
            return
        if done:
            self._stop_timer()
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                assert self._head is not None
                waiter.set_result(Answer(*self._head, bytes(self._body)))
            if not self._keep or self._buffer:  # bytes past the answer answer nothing asked: not reused
                self.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no answer in time"))

    def send(self, message: bytes, timeout: float) -> asyncio.Future[Answer]:
        """Send a request; the future is its answer, or TimeoutError after ``timeout`` seconds (one timer, not an
        ``asyncio.timeout`` per request)."""
        assert self.transport is not None
        self.received = False
        self._head, self._length, self._chunked, self._until_close, self._keep = None, None, False, False, True
        self._body = bytearray()
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._timer = loop.call_later(timeout, self._timed_out)
        self.transport.write(message)
        return self._waiter

    def _parse(self) -> bool:
        """Whether the answer is complete with what the buffer holds (1xx answers skipped)."""
        buffer = self._buffer
        while self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise HTTPError(f"an answer's head longer than {_MAX_HEAD} bytes")
                return False
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[:end + 4]
            self._read_head(head)
        if self._chunked:
            return self._parse_chunks()
        if self._until_close:
            self._body += buffer
            buffer.clear()
            return False
        assert self._length is not None
        if len(buffer) < self._length:
            return False
        self._body = buffer[:self._length]
        del buffer[:self._length]
        return True

    def _read_head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _digits(parts[1]):
            raise HTTPError(f"not an HTTP/1 status line: {lines[0][:100]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            return  # an interim answer: the real one follows
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                value = value.strip()
                if not _digits(value):
                    raise HTTPError(f"a bad Content-Length: {value[:40]!r}")
                length = int(value)
            elif name == "transfer-encoding":
                self._chunked = "chunked" in value.lower()
            elif name == "connection":
                self._keep = "close" not in value.lower()
        if parts[0] == "HTTP/1.0":
            self._keep = False
        self._head = (status, parts[2] if len(parts) > 2 else "")
        if status in (204, 304):
            length = 0
        if not self._chunked:
            if length is None:
                self._until_close, self._keep = True, False
            self._length = length

    def _parse_chunks(self) -> bool:
        buffer = self._buffer
        while True:
            if self._length is None:  # a chunk's size line
                end = buffer.find(b"\r\n")
                if end < 0:
                    return False
                size = bytes(buffer[:end]).split(b";", 1)[0].strip()
                if not size or size.strip(b"0123456789abcdefABCDEF"):  # int() would take "-2", "+2", "0x2", "2_0"
                    raise HTTPError(f"a bad chunk size: {size[:20]!r}")
                self._length = int(size, 16)
                del buffer[:end + 2]
            if self._length == 0:  # the last chunk, then trailers up to an empty line
                end = buffer.find(b"\r\n\r\n") if not buffer.startswith(b"\r\n") else -2
                if end == -1:
                    return False
                del buffer[:end + 4]
                return True
            if len(buffer) < self._length + 2:
                return False
            if buffer[self._length:self._length + 2] != b"\r\n":
                raise HTTPError("a chunk longer than its size")
            self._body += buffer[:self._length]
            del buffer[:self._length + 2]
            self._length = None


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


class HTTPClient:
    """Requests to one server (``base``, e.g. ``https://10.0.0.1:6443``) over at most ``limit`` connections,
    each request given ``timeout`` seconds to connect and as many to be answered."""

    def __init__(self, base: str, *, ssl_context: ssl.SSLContext | None, server_hostname: str | None,
                 limit: int, timeout: float) -> None:
        self.timeout = timeout
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) server URL: {base!r}")
        if parts.scheme == "https" and ssl_context is None:
            raise ValueError(f"an https server URL needs a TLS context (never plain HTTP): {base!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._server_hostname = (server_hostname or None) if self._ssl is not None else None
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc.rpartition("@")[2]
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(limit)
        self._open: set[_Connection] = set()

    async def request(self, message: bytes, *, repeatable: bool) -> Answer:
        """Send ``message`` (a whole HTTP/1.1 request) and read its answer. Raises HTTPError (an OSError) and
        TimeoutError. ``repeatable``: the request may be sent again when a reused connection turns out closed."""
        async with self._slots:
            connection = await self._connection()
            try:
                return await self._exchange(connection, message)
            except HTTPError:
                if not (repeatable and connection.reused and not connection.received):
                    raise
            return await self._exchange(await self._connection(fresh=True), message)

    async def _exchange(self, connection: _Connection, message: bytes) -> Answer:
        try:
            answer = await connection.send(message, self.timeout)
        except BaseException:
            connection.close()  # failed, cancelled or timed out mid-answer: the connection is done with
            self._open.discard(connection)
            raise
        if connection.closed:
            self._open.discard(connection)
        else:
            connection.idle_since = time.monotonic()
            connection.reused = True
            self._idle.append(connection)
        return answer

    async def _connection(self, fresh: bool = False) -> _Connection:
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE:
                return connection
            connection.close()
            self._open.discard(connection)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            _, connection = await loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl,
                                                         server_hostname=self._server_hostname)
        self._open.add(connection)
        return connection

    def close(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
