"""The lean HTTP/1.1 client (k8s/http.py) against a raw socket server that frames answers every way HTTP allows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mtls_operator.k8s.http import HTTPClient, HTTPError

Reply = Callable[[bytes], bytes | None]  # a request's head -> the bytes to answer (None: close at once)


class Server:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.reply(head)
                if answer is None:
                    break
                for piece in (answer[:7], answer[7:30], answer[30:]):  # in pieces: parsing resumes
                    writer.write(piece)
                    await writer.drain()
                if b"Connection: close" in answer or (b"Content-Length" not in answer and b"chunked" not in answer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(reply: Reply) -> tuple[Server, str]:
        server = Server(reply)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        port = listening.sockets[0].getsockname()[1]
        return server, f"http://127.0.0.1:{port}"

    yield start
    for listening in servers:
        listening.close()


Serve = Callable[[Reply], Awaitable[tuple[Server, str]]]


def client(url: str, timeout: float = 5.0) -> HTTPClient:
    return HTTPClient(url, ssl_context=None, server_hostname=None, limit=4, timeout=timeout)


def get(path: str = "/x") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


async def test_answers_by_length_reuse_one_connection(serve: Serve) -> None:
    server, url = await serve(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    http = client(url)
    try:
        for _ in range(3):
            answer = await http.request(get(), repeatable=True)
            assert (answer.status, answer.reason, answer.body) == (200, "OK", b'{"a":1}')
    finally:
        http.close()
    assert server.connections == 1


async def test_chunked_answers_with_extensions_and_trailers(
        serve: Serve) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    plain = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    answers = iter([chunked, plain])
    server, url = await serve(lambda head: next(answers))
    http = client(url)
    try:
        assert (await http.request(get(), repeatable=True)).body == b"hello world"
        answer = await http.request(get(), repeatable=True)
        assert (answer.status, answer.body) == (201, b"abc")
    finally:
        http.close()
    assert server.connections == 1


async def test_connection_close_and_an_answer_framed_by_the_end(
        serve: Serve) -> None:
    answers = iter([b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
                    b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    server, url = await serve(lambda head: next(answers))
    http = client(url)
    try:
        assert (await http.request(get(), repeatable=True)).status == 404
        assert (await http.request(get(), repeatable=True)).body == b"until the end"
        assert (await http.request(get(), repeatable=True)).status == 204
        assert (await http.request(get(), repeatable=True)).body == b"ok"  # the interim answer skipped
    finally:
        http.close()
    assert server.connections == 3  # after the close, after the answer the end framed; then kept


async def test_a_closed_idle_connection_is_replaced_for_a_get_only(
        serve: Serve) -> None:
    calls: list[bytes] = []

    def reply(head: bytes) -> bytes | None:
        calls.append(head)
        # Every second request on a connection finds it closed by the server (as an idle one may be).
        return None if len(calls) in (2, 4) else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    server, url = await serve(reply)
    http = client(url)
    try:
        assert (await http.request(get(), repeatable=True)).body == b"ok"
        assert (await http.request(get(), repeatable=True)).body == b"ok"  # sent again on a new connection
        with pytest.raises(HTTPError, match="closed"):
            await http.request(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", repeatable=False)
    finally:
        http.close()
    assert server.connections == 2


async def test_garbage_a_bad_length_and_silence_fail_cleanly(
        serve: Serve) -> None:
    answers = iter([b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
    _, url = await serve(lambda head: next(answers))
    http = client(url)
    try:
        with pytest.raises(HTTPError, match="not an HTTP/1 status line"):
            await http.request(get(), repeatable=False)
        with pytest.raises(HTTPError, match="Content-Length"):
            await http.request(get(), repeatable=False)
        with pytest.raises(HTTPError, match="chunk size"):
            await http.request(get(), repeatable=False)
    finally:
        http.close()
    _, silent = await serve(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    http = client(silent, timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await http.request(get(), repeatable=False)
    finally:
        http.close()
    refused = client("http://127.0.0.1:9")
    with pytest.raises(ConnectionRefusedError):
        await refused.request(get(), repeatable=True)


def test_an_https_server_without_a_tls_context_is_refused() -> None:
    with pytest.raises(ValueError, match="TLS context"):
        HTTPClient("HTTPS://127.0.0.1:6443", ssl_context=None, server_hostname=None, limit=1, timeout=1.0)


async def test_bytes_past_an_answer_are_never_taken_for_the_next_answer(serve: Serve) -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",  # one answer too many
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"])
    server, url = await serve(lambda head: next(answers))
    http = client(url)
    try:
        assert (await http.request(get("/a"), repeatable=True)).body == b"ok"
        assert (await http.request(get("/b"), repeatable=True)).body == b"fresh"
    finally:
        http.close()
    assert server.connections == 2  # the connection the extra bytes came on is not reused


async def test_lengths_status_and_chunks_are_read_strictly(serve: Serve) -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok",  # a digit to str.isdigit, not to HTTP
                    b"HTTP/1.1 \xb200 OK\r\nContent-Length: 2\r\n\r\nok",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nabcdef\r\n0\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n"])
    _, url = await serve(lambda head: next(answers))
    http = client(url)
    try:
        with pytest.raises(HTTPError, match="Content-Length"):
            await http.request(get(), repeatable=False)
        with pytest.raises(HTTPError, match="not an HTTP/1 status line"):
            await http.request(get(), repeatable=False)
        with pytest.raises(HTTPError, match="chunk size"):
            await http.request(get(), repeatable=False)
        with pytest.raises(HTTPError, match="chunk"):
            await http.request(get(), repeatable=False)
    finally:
        http.close()


async def test_an_answer_framed_by_the_end_is_refused_when_the_connection_breaks(serve: Serve) -> None:
    import socket
    import struct

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n{\"items\": [")
        await writer.drain()
        await asyncio.sleep(0.2)  # the client has the head and part of the body
        # Reset, not closed: the answer is cut short, not ended.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    http = client(f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}")
    try:
        with pytest.raises(HTTPError, match="closed"):
            await http.request(get(), repeatable=False)
    finally:
        http.close()
        listening.close()
