"""CURVE key hygiene: open secret keys are refused, secret keys are born 0600, revocation is live.

Every server here is a real backend process answering over real ZeroMQ CURVE sockets.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from core.errors import BackendUnavailableError, ConfigError, TransportTimeoutError
from protocol.client import BackendClient
from protocol.keys_cli import main as keys_main
from protocol.loopback import LoopbackBackend
from protocol.process import spawn_backend
from protocol.security import ClientKeys
from protocol.server import BackendServer

LOOPBACK = [sys.executable, "-m", "protocol.loopback", "--log-format", "json"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI mains configure structlog onto the captured stderr; undo that after each test."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    server_dir = tmp_path / "server"
    assert keys_main(["init-server", str(server_dir)]) == 0
    for name in ("ctl", "other"):
        argv = ["new-client", name, "--dir", str(tmp_path / name), "--authorize", str(server_dir)]
        assert keys_main(argv) == 0
    return tmp_path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602], ids=oct)
def test_server_refuses_a_secret_key_others_may_access(keys: Path, mode: int) -> None:
    secret = keys / "server" / "server.key_secret"
    os.chmod(secret, mode)
    expected = f"Expected secret key {secret} to be accessible by its owner only (mode 0600), "
    expected += f"actual mode {mode:04o}"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        BackendServer(LoopbackBackend(), "tcp://0.0.0.0:5555", curve_keys_dir=keys / "server")
    os.chmod(secret, 0o600)
    BackendServer(LoopbackBackend(), "tcp://0.0.0.0:5555", curve_keys_dir=keys / "server").close()


def test_serve_command_exits_2_naming_the_file_and_its_mode(keys: Path) -> None:
    secret = keys / "server" / "server.key_secret"
    os.chmod(secret, 0o644)
    argv = [*LOOPBACK, "--bind", "tcp://127.0.0.1:*", "--curve-keys", str(keys / "server")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert f"{secret}" in done.stderr
    assert "actual mode 0644" in done.stderr
    assert f"chmod 600 {secret}" in done.stderr
    assert "NEUROLOOP_READY" not in done.stdout


def test_client_refuses_its_own_open_secret_key(keys: Path) -> None:
    secret = keys / "ctl" / "ctl.key_secret"
    os.chmod(secret, 0o640)
    with pytest.raises(ConfigError, match=re.escape("actual mode 0640: its group may access")):
        ClientKeys.load(secret, keys / "server" / "server.key")


def test_secret_keys_are_created_0600_not_narrowed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With chmod disabled, only a file created with mode 0600 ends up 0600.
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    old_umask = os.umask(0o022)
    try:
        assert keys_main(["init-server", str(tmp_path / "s")]) == 0
        assert keys_main(["new-client", "c", "--dir", str(tmp_path / "c")]) == 0
    finally:
        os.umask(old_umask)
    for secret in (tmp_path / "s" / "server.key_secret", tmp_path / "c" / "c.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    # and the files are ordinary ZeroMQ certificates
    keys = ClientKeys.load(tmp_path / "c" / "c.key_secret", tmp_path / "s" / "server.key")
    assert len(keys.public) == len(keys.secret) == 40


def test_revoke_names_the_authorised_keys_when_the_name_is_unknown(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys_main(["revoke", "nobody", "--server-dir", str(keys / "server")]) == 2
    assert "authorised: ctl.key, other.key" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["neuroloop-keys revoke", "rm clients/ctl.key"])
def test_a_revoked_client_is_refused_without_restarting_the_server(
    keys: Path, tmp_path: Path, how: str
) -> None:
    server_dir = keys / "server"
    server_public = server_dir / "server.key"
    ctl = ClientKeys.load(keys / "ctl" / "ctl.key_secret", server_public)
    other = ClientKeys.load(keys / "other" / "other.key_secret", server_public)
    log_path = tmp_path / "server.log"
    argv = [*LOOPBACK, "--bind", "tcp://127.0.0.1:*", "--curve-keys", str(server_dir)]
    with open(log_path, "wb") as log_file:
        proc = spawn_backend(argv, ready_timeout_s=60.0, stderr=log_file)
        try:
            with BackendClient(proc.address, timeout_s=10.0, curve=ctl) as connected:
                connected.hello()
                assert connected.heartbeat().session_id == connected.session_id
                if how == "rm clients/ctl.key":
                    (server_dir / "clients" / "ctl.key").unlink()
                else:
                    assert keys_main(["revoke", "ctl", "--server-dir", str(server_dir)]) == 0
                # the open connection: its next request goes unanswered
                with pytest.raises(TransportTimeoutError):
                    connected.heartbeat(timeout_s=1.5)
            # a new connection with the revoked key: the handshake is refused
            with (
                BackendClient(proc.address, timeout_s=1.5, curve=ctl) as again,
                pytest.raises(BackendUnavailableError, match="CURVE refused"),
            ):
                again.hello()
            # the same server process still serves the keys that stay listed
            assert proc.alive()
            with BackendClient(proc.address, timeout_s=10.0, curve=other) as friend:
                assert friend.hello().backend_kind == "loopback"
                friend.bye()
        finally:
            assert proc.stop() == 0
    assert not (server_dir / "clients" / "ctl.key").exists()
    if how == "neuroloop-keys revoke":
        assert len(list((server_dir / "revoked").glob("ctl-*.key"))) == 1
    events = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    reloaded = [e for e in events if e["event"] == "curve_allow_list_reloaded"]
    assert reloaded
    assert reloaded[0]["revoked"] == [ctl.public.decode()]
    reasons = {e["reason"] for e in events if e["event"] == "curve_client_refused"}
    assert reasons == {"public key revoked (allow-list)", "public key not in the allow-list"}
