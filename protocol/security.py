"""Where a backend may listen, and CURVE keys when it listens beyond this host.

Policy (docs/protocol.md §7): ``ipc://``, ``inproc://`` and ``tcp://`` on a loopback address
need no keys. Any other address needs CURVE: the server's key pair plus an allow-list of client
public keys; a client whose key is not listed is refused and the refusal is logged.

Key directory layout, as made by ``neuroloop-keys``::

    KEYS_DIR/server.key            server public key (give it to clients)
    KEYS_DIR/server.key_secret     server secret key (mode 0600)
    KEYS_DIR/clients/*.key         public keys of the allowed clients

    CLIENT_DIR/NAME.key            a client's public key (copy it into KEYS_DIR/clients/)
    CLIENT_DIR/NAME.key_secret     that client's secret key (mode 0600)
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from protocol.errors import ConfigError

SERVER_KEY_NAME = "server"
CLIENTS_DIR_NAME = "clients"


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this host.

    ``ipc://`` and ``inproc://`` always do; ``tcp://`` does for ``localhost``, 127.0.0.0/8
    and ``::1``. Anything else (``tcp://*``, ``tcp://0.0.0.0``, a host name, another
    transport) does not.

    Raises:
        ConfigError: for an address that is not ``transport://endpoint``.
    """
    transport, sep, rest = address.partition("://")
    if not sep or not rest:
        raise ConfigError(
            f"Expected an address like ipc:///tmp/sim.sock or tcp://127.0.0.1:5555, "
            f"actual {address!r}"
        )
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerKeys:
    """The server's CURVE key pair and its allow-list of client public keys (z85 bytes)."""

    public: bytes
    secret: bytes
    allowed_clients: frozenset[bytes]

    @classmethod
    def load(cls, keys_dir: Path) -> ServerKeys:
        """Load ``server.key_secret`` and ``clients/*.key`` from ``keys_dir``.

        Raises:
            ConfigError: naming the missing or unreadable file.
        """
        secret_file = keys_dir / f"{SERVER_KEY_NAME}.key_secret"
        clients_dir = keys_dir / CLIENTS_DIR_NAME
        if not secret_file.is_file():
            raise ConfigError(
                f"Expected the server secret key at {secret_file}, actual no such file "
                f"(make one with: neuroloop-keys init-server {keys_dir})"
            )
        if not clients_dir.is_dir():
            raise ConfigError(f"Expected a directory of allowed client keys at {clients_dir}")
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
            allowed = zmq.auth.load_certificates(clients_dir)
        except (OSError, ValueError) as err:
            raise ConfigError(f"Expected readable CURVE keys in {keys_dir}, actual: {err}") from err
        if secret is None:
            raise ConfigError(f"Expected a secret key in {secret_file}, actual none")
        if not allowed:
            raise ConfigError(
                f"Expected at least one client public key (*.key) in {clients_dir}, actual none"
            )
        return cls(public, secret, frozenset(allowed))


@dataclass(frozen=True)
class ClientKeys:
    """A client's CURVE key pair and the server's public key (z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, client_secret_file: Path, server_public_file: Path) -> ClientKeys:
        """Load a client key pair (``NAME.key_secret``) and the server's ``server.key``.

        Raises:
            ConfigError: naming the missing or unreadable file.
        """
        try:
            public, secret = zmq.auth.load_certificate(client_secret_file)
            server_public, _ = zmq.auth.load_certificate(server_public_file)
        except (OSError, ValueError) as err:
            raise ConfigError(f"Expected readable CURVE key files, actual: {err}") from err
        if secret is None:
            raise ConfigError(
                f"Expected a secret key in {client_secret_file}, actual a public-only file"
            )
        return cls(public, secret, server_public)

    def apply(self, socket: zmq.Socket[bytes]) -> None:
        """Make ``socket`` a CURVE client with these keys (before connect)."""
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret
        socket.curve_serverkey = self.server_public


class _AllowList:
    """ZAP credentials provider: accept listed client keys, log every decision."""

    def __init__(self, allowed: frozenset[bytes]) -> None:
        self._allowed = allowed
        self._log = structlog.get_logger().bind(component="curve")

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self._allowed
        if ok:
            self._log.info("curve_client_accepted", client_key=key.decode("ascii", "replace"))
        else:
            self._log.warning(
                "curve_client_refused",
                client_key=key.decode("ascii", "replace"),
                reason="public key not in the allow-list",
            )
        return ok


def start_authenticator(
    context: zmq.Context[zmq.Socket[bytes]], keys: ServerKeys
) -> ThreadAuthenticator:
    """Start ZAP on ``context`` so only ``keys.allowed_clients`` can connect."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(keys.allowed_clients))
    return auth


def apply_server_keys(socket: zmq.Socket[bytes], keys: ServerKeys) -> None:
    """Make ``socket`` a CURVE server with ``keys`` (before bind)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` and ``NAME.key_secret`` (mode 0600) in ``directory``.

    Raises:
        ConfigError: if either file already exists (keys are never overwritten).
    """
    public_file = directory / f"{name}.key"
    secret_file = directory / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise ConfigError(f"Expected no existing key at {path}; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    public_path, secret_path = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_path, 0o600)
    return Path(public_path), Path(secret_path)
