"""Who may see the monitor: loopback by default; any other address needs a token.

On a loopback address the page is open to this machine's users, and the ``Host`` header must
name a loopback host (a web page elsewhere cannot reach it through DNS rebinding). On any
other address every request must carry the token: ``?token=`` once (the page then keeps it
in an HTTP-only, same-site cookie) or ``Authorization: Bearer``. Without it: 401, and a
WebSocket is closed before it is accepted. The e-stop request also needs the
``X-NeuroLoop-EStop`` header, which a cross-site form cannot send, and a WebSocket whose
``Origin`` is another site is refused (no cross-site WebSocket reads).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

#: Environment variable holding the token (instead of ``--token-file``).
TOKEN_ENV = "NEUROLOOP_MONITOR_TOKEN"
#: Cookie the page keeps the token in.
COOKIE = "neuroloop_monitor_token"
#: Header an e-stop request must carry.
ESTOP_HEADER = "x-neuroloop-estop"
#: Shortest token accepted (characters).
MIN_TOKEN_CHARS = 16

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(text: str, default_port: int) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``:PORT`` → (host, port); IPv6 in brackets (``[::1]:8765``)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"Expected HOST[:PORT] with a closing ']', actual {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    host = host or "127.0.0.1"
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"Expected a port number in HOST[:PORT], actual {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"Expected a port in [0, 65535], actual {port}")
    return host, port


@dataclass(frozen=True)
class Access:
    """The access rule of one server.

    Args:
        host: The bound address.
        token: Required token, or ``None`` on loopback without one.
    """

    host: str
    token: str | None

    def token_ok(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is the token (constant-time)."""
        if self.token is None:
            return True
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def host_ok(self, host_header: str | None) -> bool:
        """On loopback: the request names a loopback host (no DNS rebinding)."""
        if self.token is not None or not is_loopback(self.host):
            return True
        if not host_header:
            return False
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(name)


def load_token(token_file: Path | None) -> str | None:
    """The token from ``--token-file`` or ``$NEUROLOOP_MONITOR_TOKEN`` (``None``: neither)."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as err:
            raise ConfigError(f"Expected a readable token file, actual {err}") from None
        source = str(token_file)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
        if not token:
            return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"Expected a token of at least {MIN_TOKEN_CHARS} characters in {source}, actual "
            f"{len(token)}"
        )
    return token


def access_for(host: str, token: str | None) -> Access:
    """The rule for binding ``host``: a non-loopback address without a token is refused."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Expected a token to serve the monitor on the non-loopback address {host!r}, "
            f"actual none. Give --token-file PATH or set {TOKEN_ENV} (make one with: "
            f'python -c "import secrets; print(secrets.token_urlsafe(32))"), or keep the '
            f"default 127.0.0.1 and reach it over SSH: ssh -N -L 8765:127.0.0.1:8765 USER@HOST"
        )
    return Access(host, token)


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(32)


def tunnel_hint(host: str, port: int) -> str:
    """How to reach the page from another machine."""
    if is_loopback(host):
        return (
            f"from another machine: ssh -N -L {port}:127.0.0.1:{port} USER@THIS_HOST, then open "
            f"http://127.0.0.1:{port}/"
        )
    return (
        f"serving on {host}:{port} with a token: open http://HOST:{port}/?token=TOKEN; "
        f"prefer an SSH tunnel to a loopback monitor (ssh -N -L {port}:127.0.0.1:{port} "
        "USER@THIS_HOST), since the page itself is plain HTTP"
    )
