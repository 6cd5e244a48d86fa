"""`mtls-operator demo`: the whole story on the emulator, as a user runs it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtls_operator.cli import main
from mtls_operator.demo.handshake import HandshakeResult


def test_demo_passes_and_writes_secret_files(tmp_path: Path) -> None:
    # As a user runs it: its own process, its own event loops.
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mtls_operator.cli", "demo", "--output-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    # The bound, for the whole process (imports, emulator, operator, handshakes).
    assert time.monotonic() - started < 30
    assert "Demo passed" in text
    # A clean run warns about nothing: the demo waits for what it needs (the webhooks' CA) before using it.
    assert run.stderr == ""
    assert not [line for line in text.splitlines() if "[WARNING" in line or "[ERROR" in line], text
    # The orders pod went through the admission webhook: a generateName, the Secret name it injected.
    assert re.search(r"orders-7d9f8c-\w{5} -> payments-0 \(mutual TLS\): OK", text), text
    assert "[ok] the webhook-injected orders pod mounts the Secret the operator wrote for it" in text
    assert "foreign-CA client -> payments-0: refused" in text
    folders = sorted(p.name for p in (tmp_path / "shop").iterdir())
    assert folders[1:] == ["payments-payments-0", "payments-payments-1"]
    assert re.fullmatch(r"orders-orders-7d9f8c-[a-z0-9]{8}", folders[0]), folders
    for folder in folders:
        files = tmp_path / "shop" / folder
        assert {p.name for p in files.iterdir()} == {"tls.crt", "tls.key", "ca.crt"}
        assert (files / "tls.key").stat().st_mode & 0o077 == 0
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(files / "ca.crt"), str(files / "tls.crt")],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_run_refuses_bad_settings_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTLS_DEFAULT_DURATION", "forever")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "MTLS_DEFAULT_DURATION" in err


async def test_demo_exits_1_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtls_operator.demo.run as demo

    def refused(*_: object, **__: object) -> HandshakeResult:
        return HandshakeResult(ok=False, error="client: injected failure")

    monkeypatch.setattr(demo, "mutual_tls_handshake", refused)
    out = io.StringIO()
    assert await demo.run_demo_async(None, out) == 1
    text = out.getvalue()
    assert re.search(r"\[FAILED\] mutual TLS between payments-0 and orders-7d9f8c-\w{5} succeeds", text), text
    assert "Demo FAILED" in text
