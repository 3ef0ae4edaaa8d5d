"""The emulator's side of the line: a pseudo-terminal or a loopback TCP socket.

A :class:`PtyPort` owns both ends of an ``os.openpty()`` pair; the host opens the slave path with
pyserial exactly as it would a USB-CDC device. A :class:`TcpPort` listens on 127.0.0.1 only and
serves one host at a time (pyserial URL ``socket://127.0.0.1:<port>``); a closed connection is a
link loss, the counterpart of a DTR drop on a real cable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tty
from abc import ABC, abstractmethod

import structlog

from core.errors import ConfigError, DeviceIOError

log = structlog.get_logger()

#: Outcome of a read: bytes, ``b""`` (nothing now) or ``None`` (the host side went away).
ReadResult = bytes | None


class EmulatorPort(ABC):
    """One end of the line the emulator reads and writes without blocking."""

    dropped_tx_bytes = 0

    @property
    @abstractmethod
    def url(self) -> str:
        """What the host passes to ``serial.serial_for_url``."""

    @abstractmethod
    def fds(self) -> list[int]:
        """File descriptors to wait on for readability."""

    @abstractmethod
    def read(self, fd: int) -> ReadResult:
        """Read what ``fd`` has; ``None`` means the host disconnected."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the host if one is connected (dropped and counted if it is not reading)."""

    @property
    @abstractmethod
    def host_connected(self) -> bool:
        """Whether a host is attached (always true for a pty)."""

    @abstractmethod
    def close(self) -> None:
        """Release every descriptor (the "unplug"); idempotent."""


class PtyPort(EmulatorPort):
    """A pseudo-terminal pair in raw mode; the host opens :attr:`url` (the slave path)."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass through untouched
        os.set_blocking(self._master, False)
        self._path = os.ttyname(self._slave)
        self._closed = False

    @property
    def url(self) -> str:
        """The slave device path (e.g. ``/dev/pts/7``)."""
        return self._path

    def fds(self) -> list[int]:
        """The master descriptor."""
        return [] if self._closed else [self._master]

    def read(self, fd: int) -> ReadResult:
        """Read from the master."""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as err:
            if err.errno == errno.EIO:
                return None
            raise DeviceIOError(f"pty read failed: {err}") from err

    def write(self, data: bytes) -> None:
        """Write to the master; bytes that do not fit (host not reading) are dropped."""
        if self._closed:
            return
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        except OSError as err:
            if err.errno == errno.EIO:
                return
            raise DeviceIOError(f"pty write failed: {err}") from err
        if n < len(data):
            self.dropped_tx_bytes += len(data) - n

    @property
    def host_connected(self) -> bool:
        """A pty cannot tell; the watchdog covers a silent host."""
        return not self._closed

    def close(self) -> None:
        """Close both ends: the host's next read fails (EIO), like a pulled USB cable."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpPort(EmulatorPort):
    """A listening TCP socket on 127.0.0.1 serving one host connection at a time.

    Args:
        port: TCP port; 0 picks a free one.
        host: Bind address; only loopback addresses are accepted.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"Expected a loopback bind address (127.0.0.1), actual {host!r}")
        if not 0 <= port <= 65535:
            raise ConfigError(f"Expected a TCP port in [0, 65535], actual {port}")
        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(1)
        self._listener.setblocking(False)
        self._host = host
        self._port = int(self._listener.getsockname()[1])
        self._client: socket.socket | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``socket://127.0.0.1:<port>``."""
        return f"socket://{self._host}:{self._port}"

    def fds(self) -> list[int]:
        """Listener plus the connected host, if any."""
        if self._closed:
            return []
        out = [self._listener.fileno()]
        if self._client is not None:
            out.append(self._client.fileno())
        return out

    def read(self, fd: int) -> ReadResult:
        """Accept a pending host or read from the connected one."""
        if fd == self._listener.fileno():
            try:
                conn, peer = self._listener.accept()
            except BlockingIOError:
                return b""
            if self._client is not None:
                log.warning("emulator_busy", peer=str(peer), reason="one host at a time")
                conn.close()
                return b""
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = conn
            log.info("emulator_host_connected", peer=str(peer))
            return b""
        if self._client is None:
            return b""
        try:
            data = self._client.recv(4096)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if data:
            return data
        self._drop_client()
        return None

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            log.warning("emulator_host_disconnected")

    def write(self, data: bytes) -> None:
        """Send to the connected host; dropped when none is connected or it is not reading."""
        if self._client is None:
            self.dropped_tx_bytes += len(data)
            return
        try:
            n = self._client.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop_client()
            return
        if n < len(data):
            self.dropped_tx_bytes += len(data) - n

    @property
    def host_connected(self) -> bool:
        """Whether a host holds the connection."""
        return self._client is not None

    def close(self) -> None:
        """Close the connection and stop listening."""
        if self._closed:
            return
        self._closed = True
        self._drop_client()
        self._listener.close()
