"""Header strictness (issue 18 item 6): each malformation gets the code docs/protocol.md §2.4 gives.

Every case runs through the codec and through a real backend process over a ZeroMQ socket,
and checks the error code and the request id the error reply carries.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import msgpack
import pytest
import zmq

from core.errors import ProtocolError
from protocol.codec import pack, to_wire, unpack, unpack_reply, unpack_request
from protocol.loopback import LoopbackBackend
from protocol.messages import ErrorReply, Heartbeat, Status, Step
from protocol.process import BackendProcess, spawn_local_backend

SESSION = "ab" * 16
RID = 9


def _step(**changes: object) -> dict[object, object]:
    body: dict[object, object] = dict(to_wire(RID, Step(SESSION, {"amplitude_mv": 1.0}, 20.0)))
    body.update(changes)
    return body


def _without(key: str) -> dict[object, object]:
    body = _step()
    del body[key]
    return body


def _status_as_request() -> dict[object, object]:
    return dict(to_wire(RID, Status("idle", None, 0, 0.0, False)))


# (body, code, request id in the error reply, text in the message)
CASES: list[tuple[str, dict[object, object], str, int, str]] = [
    ("v float 1.0", _step(v=1.0), "unsupported_version", RID, "actual 1.0 (float"),
    ("v true", _step(v=True), "unsupported_version", RID, "actual True (bool"),
    ("v str", _step(v="1"), "unsupported_version", RID, "actual '1' (str"),
    ("v missing", _without("v"), "unsupported_version", RID, "actual no v key"),
    ("v 2", _step(v=2), "unsupported_version", RID, "Expected protocol version 1, actual 2"),
    ("type bin", _step(type=b"step"), "bad_message", RID, "type to be a string, actual bytes"),
    ("type int", _step(type=3), "bad_message", RID, "type to be a string, actual int"),
    ("type missing", _without("type"), "bad_message", RID, "actual no such key"),
    ("type unknown", _step(type="launch"), "unknown_type", RID, "actual 'launch'"),
    ("reply type, bare", {"v": 1, "type": "status", "id": RID}, "unknown_type", RID,
     "Expected a request (hello|"),
    ("reply type, full", _status_as_request(), "unknown_type", RID, "actual status"),
    ("integer key", {**_step(), 5: 1}, "bad_message", RID, "string keys in the step message"),
    ("integer key, nested", _step(stimulus={1: 1.0}), "bad_message", RID, "step.stimulus key"),
    ("integer key and v 2", {**_step(v=2), 5: 1}, "unsupported_version", RID, "actual 2"),
    ("id negative", _step(id=-1), "out_of_range", 0, "Expected id in [0"),
    ("id float", _step(id=9.0), "bad_message", 0, "id to be an integer"),
    ("id missing", _without("id"), "bad_message", 0, "missing ['id']"),
    ("not a map", [1, 2, 3], "bad_message", 0, "Expected a message map, actual list"),
]  # fmt: skip


def _bytes(body: object) -> bytes:
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "code", "rid", "text"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_codec_refuses_with_the_documented_code_and_keeps_the_id(
    body: object, code: str, rid: int, text: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_request(_bytes(body))
    assert info.value.code == code
    assert text in str(info.value)
    assert (info.value.request_id or 0) == rid
    reply = LoopbackBackend().handle(b"peer", _bytes(body))
    got_rid, error = unpack_reply(reply)
    assert isinstance(error, ErrorReply)
    assert (got_rid, error.code) == (rid, code)


def test_a_request_type_sent_as_a_reply_is_unknown_type() -> None:
    data = pack(RID, Heartbeat(SESSION))
    with pytest.raises(ProtocolError, match="Expected a reply") as info:
        unpack_reply(data)
    assert info.value.code == "unknown_type"
    assert info.value.request_id == RID
    bare = _bytes({"v": 1, "type": "heartbeat", "id": RID})
    with pytest.raises(ProtocolError, match="Expected a reply") as info:
        unpack_reply(bare)
    assert info.value.code == "unknown_type"
    with pytest.raises(ProtocolError, match="missing") as info:
        unpack(bare)  # any type allowed: the missing field is what is wrong
    assert info.value.code == "bad_message"


@pytest.fixture(scope="module")
def backend() -> Iterator[BackendProcess]:
    argv = [sys.executable, "-m", "protocol.loopback", "--log-level", "error"]
    with spawn_local_backend(argv, "ipc", ready_timeout_s=60.0) as proc:
        yield proc


def test_server_answers_each_malformation_over_zeromq(backend: BackendProcess) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(backend.address)
    try:
        for name, body, code, rid, text in CASES:
            sock.send(_bytes(body))
            assert sock.poll(10_000, zmq.POLLIN), f"{name}: no reply within 10 s"
            got_rid, error = unpack_reply(sock.recv())
            assert isinstance(error, ErrorReply), name
            assert (got_rid, error.code) == (rid, code), name
            assert text in error.message, name
    finally:
        sock.close(0)
        ctx.term()
    assert backend.alive()
