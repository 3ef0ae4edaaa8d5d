"""``neuroloop-keys``: make CURVE key pairs for backends listening beyond this host."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
from pathlib import Path

import structlog

from core.errors import ConfigError
from core.logs import add_log_options, configure_from_args
from protocol.security import (
    CLIENTS_DIR_NAME,
    REVOKED_DIR_NAME,
    SERVER_KEY_NAME,
    write_key_pair,
)

DESCRIPTION = """\
Make CURVE key pairs (ZeroMQ's Curve25519 encryption and authentication).

A backend bound to a non-loopback address (tcp://0.0.0.0:5555, a LAN IP) refuses to start
without CURVE keys, and then accepts only clients whose public key is in its allow-list.
Secret keys are written with mode 0600 and are never overwritten; keep them out of git. A
backend refuses a secret key file that its group or others may read (fix: chmod 600 FILE).
Revoking a client takes effect at once, without restarting the backend: its next connection
is refused and its requests on an open connection go unanswered.
"""

EPILOG = """\
examples:
  # on the backend host: server key pair and an empty allow-list (keys/clients/)
  neuroloop-keys init-server keys/
  # for each controller: a client key pair, authorised on the server at once
  neuroloop-keys new-client ctl --dir ctl-keys/ --authorize keys/
  # or authorise a public key made elsewhere
  neuroloop-keys authorize ctl-keys/ctl.key --server-dir keys/

  neuroloop-sim serve --bind tcp://0.0.0.0:5555 --curve-keys keys/
  # the client needs ctl-keys/ctl.key_secret and keys/server.key

  # withdraw a client's access (the running backend stops answering it)
  neuroloop-keys revoke ctl --server-dir keys/
"""


def _init_server(keys_dir: Path) -> None:
    public, secret = write_key_pair(keys_dir, SERVER_KEY_NAME)
    (keys_dir / CLIENTS_DIR_NAME).mkdir(exist_ok=True)
    print(f"server public key: {public}\nserver secret key: {secret} (mode 0600)")
    print(f"allow-list: {keys_dir / CLIENTS_DIR_NAME}/ (add client *.key files)")


def _authorize(public_key: Path, server_dir: Path) -> Path:
    clients = server_dir / CLIENTS_DIR_NAME
    if not clients.is_dir():
        raise ConfigError(
            f"Expected an allow-list directory at {clients}, actual none "
            f"(run: neuroloop-keys init-server {server_dir})"
        )
    if public_key.suffix != ".key" or not public_key.is_file():
        raise ConfigError(f"Expected a public key file NAME.key, actual {public_key}")
    target = clients / public_key.name
    if target.exists():
        raise ConfigError(f"Expected no key named {target}; refusing to overwrite it")
    shutil.copyfile(public_key, target)
    structlog.get_logger().info("client_key_authorized", key=str(target))
    print(f"authorised: {target}")
    return target


def _revoke(name: str, server_dir: Path) -> Path:
    """Move ``clients/NAME.key`` to ``revoked/NAME-<UTC time>.key`` (kept for the record)."""
    key_name = name if name.endswith(".key") else f"{name}.key"
    source = server_dir / CLIENTS_DIR_NAME / Path(key_name).name
    if not source.is_file():
        listed = sorted(p.name for p in (server_dir / CLIENTS_DIR_NAME).glob("*.key"))
        raise ConfigError(
            f"Expected an authorised client key at {source}, actual none (authorised: "
            f"{', '.join(listed) or 'none'})"
        )
    revoked = server_dir / REVOKED_DIR_NAME
    revoked.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = revoked / f"{source.stem}-{stamp}.key"
    os.replace(source, target)
    structlog.get_logger().info("client_key_revoked", key=str(source), moved_to=str(target))
    print(f"revoked: {source} (moved to {target}); a running backend refuses it from now on")
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-keys``."""
    parser = argparse.ArgumentParser(
        prog="neuroloop-keys",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_log_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_server = sub.add_parser(
        "init-server",
        help="Make the server key pair and clients/ dir.",
        description="Write DIR/server.key, DIR/server.key_secret and "
        "an empty allow-list DIR/clients/.",
    )
    p_server.add_argument("dir", type=Path, help="Key directory for the backend (--curve-keys).")
    p_client = sub.add_parser(
        "new-client",
        help="Make a client key pair.",
        description="Write DIR/NAME.key and DIR/NAME.key_secret.",
    )
    p_client.add_argument("name", help="Client name, e.g. the controller host.")
    p_client.add_argument("--dir", type=Path, default=Path("."), help="Where to write (default .).")
    p_client.add_argument(
        "--authorize",
        type=Path,
        metavar="SERVER_DIR",
        help="Also copy the public key into SERVER_DIR/clients/.",
    )
    p_auth = sub.add_parser(
        "authorize",
        help="Add a client public key to a server allow-list.",
        description="Copy NAME.key into SERVER_DIR/clients/.",
    )
    p_auth.add_argument("public_key", type=Path, help="The client's NAME.key file.")
    p_auth.add_argument("--server-dir", type=Path, required=True, help="The server key directory.")
    p_revoke = sub.add_parser(
        "revoke",
        help="Remove a client public key from a server allow-list (no restart needed).",
        description="Move SERVER_DIR/clients/NAME.key to SERVER_DIR/revoked/. A running "
        "backend re-reads its allow-list when clients/ changes: the client's next handshake is "
        "refused and its requests on an open connection go unanswered (so its session times "
        "out and stimulation stops).",
    )
    p_revoke.add_argument("name", help="The client name (NAME or NAME.key in clients/).")
    p_revoke.add_argument(
        "--server-dir", type=Path, required=True, help="The server key directory."
    )
    args = parser.parse_args(argv)
    configure_from_args(args)
    try:
        if args.command == "init-server":
            _init_server(args.dir)
        elif args.command == "new-client":
            if not args.name.isidentifier():
                raise ConfigError(
                    f"Expected a client name of letters, digits and '_', actual {args.name!r}"
                )
            public, secret = write_key_pair(args.dir, args.name)
            print(f"client public key: {public}\nclient secret key: {secret} (mode 0600)")
            if args.authorize is not None:
                _authorize(public, args.authorize)
        elif args.command == "revoke":
            _revoke(args.name, args.server_dir)
        else:
            _authorize(args.public_key, args.server_dir)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
