"""Wire protocol: messages, msgpack codec, ZeroMQ transport and session recordings."""
