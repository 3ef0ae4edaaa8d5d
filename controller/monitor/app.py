"""The monitor's ASGI app (Starlette): the page, its assets, a WebSocket per session, e-stop.

Read-only except for ``POST /api/estop/{i}``, which can only request a stop of a live session.
Each WebSocket gets a decimated snapshot of its session, then the new ticks as they arrive
(coalesced, at most 10 messages/s). A browser that falls behind by more than
:data:`MAX_DELTA_ROWS`, or whose own buffer is full (it asks with ``resync``), gets a fresh
decimated snapshot instead: nothing is queued per viewer, and a send that does not complete
within :data:`SEND_TIMEOUT_S` closes that viewer. None of this runs in the controller's
process.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from controller.monitor.auth import COOKIE, ESTOP_HEADER, Access
from controller.monitor.decimate import DEFAULT_BUCKETS, decimate, to_json_list, window
from controller.monitor.source import LiveSource, SessionView
from controller.summary import json_safe
from core.errors import NeuroLoopError

#: Most new rows sent as a delta; more and the viewer gets a decimated snapshot.
MAX_DELTA_ROWS = 2000
#: Longest a send to one viewer may take before that viewer is dropped.
SEND_TIMEOUT_S = 5.0
#: Shortest interval between two messages to one viewer.
PUSH_INTERVAL_S = 0.15
#: Most recent events in a snapshot (counts cover all of them).
SNAPSHOT_EVENTS = 500

STATIC = Path(str(files("controller.monitor") / "static"))


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def snapshot(view: SessionView, t0: float | None, t1: float | None, buckets: int) -> str:
    """A decimated view of ``[t0, t1]`` of the session, as the page's JSON message."""
    fold = view.fold
    rows = fold.rows
    cols = decimate(fold.columns, "t_s", rows, buckets, t0, t1)
    return _json(
        {
            "type": "snapshot",
            "rows": rows,
            "decimated": bool(len(cols["t_s"]) < rows and (t0 is None and t1 is None)),
            "range": [t0, t1],
            "cols": {name: to_json_list(values) for name, values in cols.items()},
            "events": json_safe(fold.events[-SNAPSHOT_EVENTS:]),
            "status": json_safe(fold.status()),
            "live": view.live,
            "wall_ms": json_safe(fold.last_wall_ms),
        }
    )


def delta(view: SessionView, start: int, events_start: int) -> str:
    """Rows ``start:`` and events ``events_start:`` exactly, as the page's JSON message."""
    fold = view.fold
    rows = fold.rows
    cols = {name: to_json_list(window(col, start, rows)) for name, col in fold.columns.items()}
    return _json(
        {
            "type": "delta",
            "rows": rows,
            "cols": cols,
            "events": json_safe(fold.events[events_start:]),
            "status": json_safe(fold.status()),
            "wall_ms": json_safe(fold.last_wall_ms),
            "wall_ms_first": json_safe(fold.row_wall_ms[start] if start < rows else math.nan),
        }
    )


class AccessMiddleware:
    """Applies :class:`~controller.monitor.auth.Access` to every HTTP request and WebSocket."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the request on (setting the token cookie when one was given)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.access.host_ok(headers.get("host")):
            await self._refuse(scope, receive, send, 421, "Expected a loopback Host header")
            return
        origin = headers.get("origin")
        if (
            scope["type"] == "websocket"
            and origin
            and urlsplit(origin).netloc != headers.get("host")
        ):
            # another site's page in the user's browser may not read the session
            await self._refuse(scope, receive, send, 403, "Expected a same-origin WebSocket")
            return
        token = _token_of(scope, headers)
        if not self.access.token_ok(token):
            await self._refuse(scope, receive, send, 401, "Expected the monitor token")
            return
        if scope["type"] == "http" and self.access.token is not None and token:
            await self.app(scope, receive, _with_cookie(send, token))
            return
        await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, code: int, why: str
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why})
            return
        response = Response(f"{why}\n", status_code=code, media_type="text/plain")
        await response(scope, receive, send)


def _token_of(scope: Scope, headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for part in query.split("&"):
        if part.startswith("token="):
            return part[6:]
    for item in headers.get("cookie", "").split(";"):
        name, _, value = item.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _with_cookie(send: Send, token: str) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
        await send(message)

    return wrapped  # type: ignore[return-value]


def build_app(
    views: Sequence[SessionView],
    access: Access,
    on_estop: Callable[[int], Awaitable[None]] | None = None,
) -> ASGIApp:
    """The monitor app for ``views`` (one live session, or one or two recordings)."""
    log = structlog.get_logger("controller.monitor")
    viewers = [0]

    async def index(request: Request) -> Response:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    async def sessions(request: Request) -> Response:
        return JSONResponse(
            {
                "sessions": [
                    {"index": i, "live": v.live, "rows": v.fold.rows} for i, v in enumerate(views)
                ],
                "viewers": viewers[0],
            }
        )

    async def estop(request: Request) -> Response:
        index_ = int(request.path_params["index"])
        if request.headers.get(ESTOP_HEADER) != "1":
            return JSONResponse({"error": f"Expected the {ESTOP_HEADER} header"}, 400)
        if not 0 <= index_ < len(views) or not views[index_].live:
            return JSONResponse({"error": "Expected a live session for e-stop"}, 409)
        try:
            reply = await views[index_].estop()
        except NeuroLoopError as err:
            log.error("estop_not_delivered", error=str(err))
            return JSONResponse({"error": str(err)}, 503)
        log.warning("estop_sent", session=index_, reply=reply)
        if on_estop is not None:
            await on_estop(index_)
        return JSONResponse({"requested": True, "reply": reply})

    async def stream(ws: WebSocket) -> None:
        index_ = int(ws.path_params["index"])
        if not 0 <= index_ < len(views):
            await ws.close(code=1008)
            return
        await ws.accept()
        viewers[0] += 1
        try:
            with suppress(WebSocketDisconnect, TimeoutError, RuntimeError, OSError):
                await _stream(ws, views[index_])
        finally:
            viewers[0] -= 1

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        for view in views:
            if isinstance(view, LiveSource):
                view.start()
        yield
        for view in views:
            if isinstance(view, LiveSource):
                await view.stop()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/sessions", sessions),
            Route("/api/estop/{index:int}", estop, methods=["POST"]),
            WebSocketRoute("/ws/{index:int}", stream),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    return AccessMiddleware(app, access)


async def _stream(ws: WebSocket, view: SessionView) -> None:
    """Snapshot, then deltas; requests from the page: ``resync`` and ``view`` (zoom)."""
    requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4)

    async def read() -> None:
        while True:
            message = await ws.receive_json()
            if isinstance(message, dict) and not requests.full():
                requests.put_nowait(message)

    async def send(text: str, version: int) -> None:
        await asyncio.wait_for(ws.send_text(text), SEND_TIMEOUT_S)
        view.delivered[id(ws)] = version

    reader = asyncio.get_running_loop().create_task(read())
    try:
        t0: float | None = None
        t1: float | None = None
        buckets = DEFAULT_BUCKETS
        version = view.version
        await send(snapshot(view, t0, t1, buckets), version)
        sent_rows, sent_events = view.fold.rows, len(view.fold.events)
        while not reader.done():
            if not requests.empty():
                req = requests.get_nowait()
                if req.get("type") == "view":
                    t0, t1 = _num(req.get("t0")), _num(req.get("t1"))
                    buckets = int(min(max(_num(req.get("buckets")) or DEFAULT_BUCKETS, 50), 4000))
                version = view.version
                await send(snapshot(view, t0, t1, buckets), version)
                sent_rows, sent_events = view.fold.rows, len(view.fold.events)
                continue
            if not await view.wait_changed(version, 0.5):
                continue
            version = view.version
            rows, events = view.fold.rows, len(view.fold.events)
            if rows - sent_rows > MAX_DELTA_ROWS:
                await send(snapshot(view, t0, t1, buckets), version)
            elif rows != sent_rows or events != sent_events or view.fold.finished:
                await send(delta(view, sent_rows, sent_events), version)
            else:
                view.delivered[id(ws)] = version
            sent_rows, sent_events = rows, events
            await asyncio.sleep(PUSH_INTERVAL_S)
    finally:
        view.delivered.pop(id(ws), None)
        reader.cancel()
        with suppress(asyncio.CancelledError, WebSocketDisconnect, ValueError, RuntimeError):
            await reader  # collect the reader's end (a disconnect, or bad JSON from the page)


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
