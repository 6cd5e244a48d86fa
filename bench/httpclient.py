"""A lean HTTP/1.1 client for the benches' own requests to the emulator (creating pods, watching Secrets).

The benches measure the operator; their client shares the machine's cores with it and the emulator,
so it must cost little per request. ``http.client`` spends tens of microseconds per request building
and parsing headers in Python (the e-mail header parser), and reads a watch stream chunk by chunk in
Python; here one keep-alive socket per thread sends a prepared request in one write and reads the
answer with a few ``bytes`` operations. It speaks just what the emulator answers: a status line,
headers, then a body framed by ``Content-Length`` or chunked transfer encoding.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator


class HttpError(RuntimeError):
    """A request answered outside 2xx."""


class Connection:
    """One keep-alive connection to ``host:port``; not thread-safe (one per thread)."""

    def __init__(self, host: str, port: int, timeout: float = 30) -> None:
        self.address = (host, port)
        self.host_header = f"{host}:{port}".encode()
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def _socket(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection(self.address, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            self.buffer.clear()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(262144)
        if not data:
            self.close()
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        """The buffered bytes up to ``marker`` (consumed with it), reading more as needed."""
        start = 0
        while True:
            end = self.buffer.find(marker, start)
            if end >= 0:
                data = bytes(self.buffer[:end])
                del self.buffer[:end + len(marker)]
                return data
            start = max(0, len(self.buffer) - len(marker) + 1)
            self._fill()

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _send(self, method: bytes, path: str, headers: bytes, body: bytes = b"") -> tuple[int, dict[bytes, bytes]]:
        sock = self._socket()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n" % (
            method, path.encode(), self.host_header, headers, len(body))
        sock.sendall(head + body)
        status_line, *lines = self._read_until(b"\r\n\r\n").split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            self.close()
            raise ConnectionError(f"not an HTTP response: {status_line[:80]!r}")
        fields: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def _body(self, fields: dict[bytes, bytes]) -> bytes:
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = b"".join(self._chunks())
        else:
            body = self._read_exactly(int(fields.get(b"content-length", b"0")))
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return body

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self._read_until(b"\r\n").split(b";", 1)[0], 16)
            if size == 0:
                self._read_until(b"\r\n")  # no trailers from the emulator: the empty line
                return
            yield self._read_exactly(size)
            self._read_exactly(2)

    def request(self, method: str, path: str, body: bytes = b"", content_type: bytes = b"application/json",
                accept: bytes = b"application/json") -> tuple[int, bytes]:
        """Send one request and read the whole answer: (status, body)."""
        headers = b"Content-Type: %s\r\nAccept: %s\r\n" % (content_type, accept)
        try:
            status, fields = self._send(method.encode(), path, headers, body)
            return status, self._body(fields)
        except BaseException:
            self.close()  # a request cut short leaves the connection in an unknown state
            raise

    def post(self, path: str, body: bytes) -> bytes:
        """POST a JSON body; raises :class:`HttpError` unless the answer is 2xx."""
        status, answer = self.request("POST", path, body)
        if not 200 <= status < 300:
            raise HttpError(f"POST {path}: HTTP {status}: {answer[:300]!r}")
        return answer

    def stream_lines(self, path: str, accept: bytes = b"application/json") -> Iterator[bytes]:
        """GET a streamed answer (a watch): once its headers have arrived, an iterator of its lines as they
        arrive, until it ends."""
        status, fields = self._send(b"GET", path, b"Accept: %s\r\n" % accept)
        if status != 200:
            raise HttpError(f"GET {path}: HTTP {status}: {self._body(fields)[:300]!r}")
        chunked = fields.get(b"transfer-encoding", b"").lower() == b"chunked"
        return self._lines(self._chunks() if chunked else self._raw())

    def _lines(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        pending = b""
        try:
            for chunk in chunks:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                yield from (line for line in lines if line)
        except OSError:
            pass  # the server went away (it is stopped at the end of a bench): the stream ends there
        finally:
            self.close()
        if pending:
            yield pending

    def _raw(self) -> Iterator[bytes]:
        """The rest of an unframed answer (read until the server closes)."""
        assert self.sock is not None
        if self.buffer:
            yield bytes(self.buffer)
            self.buffer.clear()
        while data := self.sock.recv(262144):
            yield data
