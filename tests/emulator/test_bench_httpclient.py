"""The benches' lean HTTP client (bench/httpclient.py) against the emulator: what the benches rely on."""

from __future__ import annotations

import json
import threading

import pytest
from bench.httpclient import Connection, HttpError

from kube_emulator import EmulatorThread

from .conftest import secret

SECRETS = "/api/v1/namespaces/default/secrets"
METADATA_ONLY = b"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def _connection(server: EmulatorThread) -> Connection:
    return Connection("127.0.0.1", server.port, timeout=10)


def test_posts_over_one_connection_and_reads_each_answer(thread_server: EmulatorThread) -> None:
    with _connection(thread_server) as connection:
        answers = [json.loads(connection.post(SECRETS, json.dumps(secret(f"s{i}")).encode())) for i in range(3)]
        status, body = connection.request("GET", f"{SECRETS}/s1")
    assert [a["metadata"]["name"] for a in answers] == ["s0", "s1", "s2"]
    assert status == 200
    assert json.loads(body)["metadata"]["name"] == "s1"
    assert thread_server.emulator.requests.count("create", "secrets") == 3


def test_an_answer_outside_2xx_raises_with_its_status(thread_server: EmulatorThread) -> None:
    with _connection(thread_server) as connection:
        connection.post(SECRETS, json.dumps(secret("a")).encode())
        with pytest.raises(HttpError, match="HTTP 409"):
            connection.post(SECRETS, json.dumps(secret("a")).encode())
        status, body = connection.request("GET", f"{SECRETS}/missing")  # the connection is still usable
    assert (status, json.loads(body)["reason"]) == (404, "NotFound")


def test_a_watch_yields_its_lines_and_ends_with_the_stream(thread_server: EmulatorThread) -> None:
    thread_server.emulator.create(secret("before"))
    lines = _connection(thread_server).stream_lines(f"{SECRETS}?watch=true&timeoutSeconds=2", accept=METADATA_ONLY)
    seen: list[dict[str, object]] = []

    def read() -> None:
        seen.extend(json.loads(line) for line in lines)

    reader = threading.Thread(target=read)
    reader.start()
    thread_server.emulator.create(secret("after"))
    reader.join(10)
    assert not reader.is_alive()
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"]) for e in seen] == [  # type: ignore[index]
        ("ADDED", "PartialObjectMetadata", "before"), ("ADDED", "PartialObjectMetadata", "after")]
