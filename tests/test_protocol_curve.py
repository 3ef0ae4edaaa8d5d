"""CURVE: key making, allow-listed clients accepted, unknown keys refused and logged."""

from __future__ import annotations

import json
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from core.errors import BackendUnavailableError, ConfigError
from protocol.client import BackendClient
from protocol.keys_cli import main as keys_main
from protocol.loopback import LoopbackBackend
from protocol.process import spawn_backend
from protocol.security import ClientKeys, ServerKeys, is_loopback
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
    assert (
        keys_main(
            ["new-client", "good", "--dir", str(tmp_path / "good"), "--authorize", str(server_dir)]
        )
        == 0
    )
    assert keys_main(["new-client", "bad", "--dir", str(tmp_path / "bad")]) == 0
    return tmp_path


def test_keys_cli_layout_and_permissions(keys: Path) -> None:
    server = keys / "server"
    assert (server / "server.key").is_file()
    assert (server / "clients" / "good.key").is_file()
    assert not (server / "clients" / "bad.key").exists()
    for secret in (server / "server.key_secret", keys / "good" / "good.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    loaded = ServerKeys.load(server)
    assert len(loaded.allowed_clients) == 1


def test_keys_cli_never_overwrites(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys_main(["init-server", str(keys / "server")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (
        keys_main(
            ["authorize", str(keys / "good" / "good.key"), "--server-dir", str(keys / "server")]
        )
        == 2
    )


def test_keys_cli_authorize(keys: Path) -> None:
    assert (
        keys_main(
            ["authorize", str(keys / "bad" / "bad.key"), "--server-dir", str(keys / "server")]
        )
        == 0
    )
    assert len(ServerKeys.load(keys / "server").allowed_clients) == 2


def test_keys_cli_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        keys_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "init-server" in out
    assert "--curve-keys" in out


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("ipc:///tmp/x.sock", True),
        ("inproc://x", True),
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.0.0.9:*", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://192.168.1.10:5555", False),
        ("tcp://eth0:5555", False),
        ("pgm://239.0.0.1:5555", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_server_refuses_non_loopback_without_keys(keys: Path) -> None:
    with pytest.raises(
        ConfigError, match=re.escape("Refusing to bind tcp://0.0.0.0:5555 without CURVE")
    ):
        BackendServer(LoopbackBackend(), "tcp://0.0.0.0:5555")
    with pytest.raises(ConfigError, match="Expected the server secret key"):
        BackendServer(LoopbackBackend(), "tcp://0.0.0.0:5555", curve_keys_dir=keys / "good")
    server = BackendServer(LoopbackBackend(), "tcp://0.0.0.0:5555", curve_keys_dir=keys / "server")
    assert server.curve
    server.close()


def test_curve_allows_listed_client_and_refuses_others(keys: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    server_public = keys / "server" / "server.key"
    good = ClientKeys.load(keys / "good" / "good.key_secret", server_public)
    bad = ClientKeys.load(keys / "bad" / "bad.key_secret", server_public)
    with open(log_path, "wb") as log_file:
        proc = spawn_backend(
            [*LOOPBACK, "--bind", "tcp://127.0.0.1:*", "--curve-keys", str(keys / "server")],
            ready_timeout_s=60.0,
            stderr=log_file,
        )
        try:
            intruder = BackendClient(proc.address, timeout_s=0.5, curve=bad)
            with intruder, pytest.raises(BackendUnavailableError, match="CURVE refused"):
                intruder.hello()
            plain = BackendClient(proc.address, timeout_s=0.5)
            with plain, pytest.raises(BackendUnavailableError):
                plain.hello()
            with BackendClient(proc.address, timeout_s=5.0, curve=good) as friend:
                assert friend.hello().backend_kind == "loopback"
                friend.bye()
        finally:
            assert proc.stop() == 0
    events = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    refused = [e for e in events if e["event"] == "curve_client_refused"]
    accepted = [e for e in events if e["event"] == "curve_client_accepted"]
    assert refused, "the unknown key was not logged"
    assert refused[0]["client_key"] == bad.public.decode()
    assert refused[0]["reason"] == "public key not in the allow-list"
    assert accepted[0]["client_key"] == good.public.decode()
    assert any(e["event"] == "server_listening" and e["curve"] is True for e in events)


def test_client_key_files_are_checked(keys: Path) -> None:
    with pytest.raises(ConfigError, match="public-only file"):
        ClientKeys.load(keys / "good" / "good.key", keys / "server" / "server.key")
    with pytest.raises(ConfigError, match="readable CURVE key"):
        ClientKeys.load(keys / "nope.key_secret", keys / "server" / "server.key")
