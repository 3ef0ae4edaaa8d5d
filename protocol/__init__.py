"""Wire protocol: messages, msgpack codec, ZeroMQ transport and session recordings.

The normative description is ``docs/protocol.md``. Modules, bottom up:

* :mod:`core.clip`: bounded text for error messages and log fields built from input.
* :mod:`core.errors`, :mod:`core.logs`: the exception hierarchy and logging setup.
* :mod:`protocol.schema`, :mod:`protocol.messages`: typed, self-validating message classes.
* :mod:`protocol.wire_limits`: what decoding one body may cost (size, entries, depth, objects).
* :mod:`protocol.codec`: pure ``pack``/``unpack`` between messages and msgpack bytes.
* :mod:`protocol.backend`: the base class every backend subclasses (session state machine,
  limit enforcement, safe stop); :mod:`protocol.server` serves one on a ROUTER socket.
* :mod:`protocol.client`: the controller's DEALER client with a deadline on every call.
* :mod:`protocol.security`, :mod:`protocol.keys_cli`: loopback policy and CURVE keys.
* :mod:`protocol.process`, :mod:`protocol.serve_cli`: start a backend in a subprocess; the
  shared ``serve`` command line.
* :mod:`protocol.recording`: append-only, CRC-framed session recordings and their reader.
* :mod:`protocol.loopback`: a trivial backend for tests and benchmarks.
* :mod:`protocol.observables`: which observation fields an implant can measure.

It builds on :mod:`core` (errors, logging, bounded text) and imports nothing else of ours.
This file imports nothing, so ``import protocol.schema`` pulls in only what it needs.
"""
