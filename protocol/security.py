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

A secret key file that its group or others may read or write is refused (as ssh refuses a
private key with open permissions), naming the file and its mode. The allow-list is read again
whenever ``KEYS_DIR/clients/`` changes: a key removed from it (``neuroloop-keys revoke``) is
refused at the next handshake, and an established connection with that key gets no answer to
its next request, without restarting the backend.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from core.errors import ConfigError

SERVER_KEY_NAME = "server"
CLIENTS_DIR_NAME = "clients"
#: Where ``neuroloop-keys revoke`` moves a revoked client key (outside the allow-list).
REVOKED_DIR_NAME = "revoked"
#: The allow-list directory is re-read on every check while its mtime is this recent.
_RECENT_NS = 2_000_000_000


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


def check_secret_key_file(path: Path) -> None:
    """Refuse a secret key file that anyone but its owner may read or write.

    Raises:
        ConfigError: naming the file, its mode and the fix (``chmod 600``).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as err:
        raise ConfigError(f"Expected a readable secret key file at {path}, actual: {err}") from err
    if os.name == "posix" and mode & 0o077:
        who = " and ".join(
            name for name, bits in (("its group", 0o070), ("others", 0o007)) if mode & bits
        )
        raise ConfigError(
            f"Expected secret key {path} to be accessible by its owner only (mode 0600), "
            f"actual mode {mode:04o}: {who} may access it. Permissions this open let another "
            f"user impersonate this key; refusing to use it. Fix: chmod 600 {path}"
        )


def _read_allow_list(clients_dir: Path) -> frozenset[bytes]:
    try:
        return frozenset(zmq.auth.load_certificates(clients_dir))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"Expected readable client public keys (*.key) in {clients_dir}, actual: {err}"
        ) from err


@dataclass(frozen=True)
class ServerKeys:
    """The server's CURVE key pair and its allow-list of client public keys (z85 bytes).

    Args:
        public: Server public key.
        secret: Server secret key.
        allowed_clients: The allow-list as loaded (:class:`AllowList` keeps it current).
        clients_dir: The allow-list directory (``KEYS_DIR/clients``).
    """

    public: bytes
    secret: bytes
    allowed_clients: frozenset[bytes]
    clients_dir: Path

    @classmethod
    def load(cls, keys_dir: Path) -> ServerKeys:
        """Load ``server.key_secret`` and ``clients/*.key`` from ``keys_dir``.

        Raises:
            ConfigError: naming the missing or unreadable file, or a secret key file that its
                group or others may access (with its mode).
        """
        secret_file = keys_dir / f"{SERVER_KEY_NAME}.key_secret"
        clients_dir = keys_dir / CLIENTS_DIR_NAME
        if not secret_file.is_file():
            raise ConfigError(
                f"Expected the server secret key at {secret_file}, actual no such file "
                f"(make one with: neuroloop-keys init-server {keys_dir})"
            )
        check_secret_key_file(secret_file)
        if not clients_dir.is_dir():
            raise ConfigError(f"Expected a directory of allowed client keys at {clients_dir}")
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except (OSError, ValueError) as err:
            raise ConfigError(f"Expected readable CURVE keys in {keys_dir}, actual: {err}") from err
        allowed = _read_allow_list(clients_dir)
        if secret is None:
            raise ConfigError(f"Expected a secret key in {secret_file}, actual none")
        if not allowed:
            raise ConfigError(
                f"Expected at least one client public key (*.key) in {clients_dir}, actual none"
            )
        return cls(public, secret, allowed, clients_dir)


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
            ConfigError: naming the missing or unreadable file, or a secret key file that its
                group or others may access (with its mode).
        """
        try:
            public, secret = zmq.auth.load_certificate(client_secret_file)
            server_public, _ = zmq.auth.load_certificate(server_public_file)
            if secret is not None:
                check_secret_key_file(client_secret_file)
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


class AllowList:
    """The client public keys a CURVE server accepts, kept current with ``clients/``.

    The directory is read again when its modification time changes (a key file added, removed
    or renamed) and on every handshake, so a revoked key is refused without a restart. If the
    directory cannot be read, every key is refused (fail closed) and the error is logged.

    Args:
        keys: The server keys (their ``clients_dir`` and the allow-list read at start).
    """

    def __init__(self, keys: ServerKeys) -> None:
        self._dir = keys.clients_dir
        self._lock = threading.Lock()
        self._allowed = keys.allowed_clients
        self._stamp = self._dir_stamp()
        self._log = structlog.get_logger().bind(component="curve")

    def _dir_stamp(self) -> int:
        try:
            return self._dir.stat().st_mtime_ns
        except OSError:
            return -1

    def _reload(self, stamp: int) -> frozenset[bytes]:
        try:
            allowed = _read_allow_list(self._dir)
        except ConfigError as err:
            allowed = frozenset()
            self._log.error("curve_allow_list_unreadable", reason=str(err), allowed=0)
        if allowed != self._allowed:
            self._log.info(
                "curve_allow_list_reloaded",
                allowed=len(allowed),
                revoked=sorted(k.decode("ascii", "replace") for k in self._allowed - allowed),
                added=sorted(k.decode("ascii", "replace") for k in allowed - self._allowed),
            )
        self._allowed, self._stamp = allowed, stamp
        return allowed

    def current(self, *, force: bool = False) -> frozenset[bytes]:
        """The allow-list now (re-read if ``clients/`` changed, or always with ``force``)."""
        stamp = self._dir_stamp()
        # A change within the file system's timestamp granularity of the last read would keep
        # the same stamp: while the stamp is recent, read every time.
        recent = time.time_ns() - stamp < _RECENT_NS
        with self._lock:
            if force or recent or stamp != self._stamp or stamp == -1:
                return self._reload(stamp)
            return self._allowed

    def permits(self, key: bytes | str | None) -> bool:
        """Whether a connected peer's z85 public key (its ZMQ ``User-Id``) is still listed."""
        if key is None:
            return False
        raw = key.encode("ascii") if isinstance(key, str) else key
        return raw in self.current()

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials provider: accept listed client keys, log every decision."""
        ok = key in self.current(force=True)
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
    context: zmq.Context[zmq.Socket[bytes]], allow_list: AllowList
) -> ThreadAuthenticator:
    """Start ZAP on ``context`` so only keys in ``allow_list`` can connect."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=allow_list)
    return auth


def apply_server_keys(socket: zmq.Socket[bytes], keys: ServerKeys) -> None:
    """Make ``socket`` a CURVE server with ``keys`` (before bind)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


_KEY_BANNER = """\
#   ZeroMQ CURVE {what} Certificate, made by neuroloop-keys
#   {advice}

metadata
curve
"""


def _create(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte on (never overwrite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as err:
        raise ConfigError(f"Expected no existing key at {path}; refusing to overwrite it") from err
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.chmod(path, mode)  # the process umask may have narrowed it; never widened


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``.

    The secret file is created with mode 0600 (no moment with wider permissions).

    Raises:
        ConfigError: if either file already exists (keys are never overwritten).
    """
    public_file = directory / f"{name}.key"
    secret_file = directory / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise ConfigError(f"Expected no existing key at {path}; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub, sec = public.decode("ascii"), secret.decode("ascii")
    _create(
        secret_file,
        _KEY_BANNER.format(what="**Secret**", advice="Keep it private: mode 0600, never in git.")
        + f'    public-key = "{pub}"\n    secret-key = "{sec}"\n',
        0o600,
    )
    _create(
        public_file,
        _KEY_BANNER.format(what="Public", advice="Give it to the peers that must trust this key.")
        + f'    public-key = "{pub}"\n',
        0o644,
    )
    return public_file, secret_file
