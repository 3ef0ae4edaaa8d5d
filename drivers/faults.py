"""Fault injection for the device emulator: the §3.5 matrix as seeded, switchable knobs.

The injector sits between the emulator's firmware and its port. Inbound bytes (host → device)
can get bit flips before the frame decoder sees them; outbound frames (device → host) can be
dropped, corrupted, duplicated, reordered, delayed, or held back when they are replies ("slow
acks"), and raw garbage or half frames can be pushed onto the line. Every random draw comes from
one seeded ``numpy.random.Generator``. All knobs can be changed while the emulator runs.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import structlog

from core.errors import ConfigError
from drivers.messages import MsgType

log = structlog.get_logger()

_REPLY_TYPES = frozenset({MsgType.ACK, MsgType.NACK, MsgType.ARMED, MsgType.CAPS})


@dataclass(frozen=True)
class FaultConfig:
    """Fault knobs; all off by default.

    Args:
        rx_bit_error_rate: Probability that each inbound bit flips (1e-5…1e-3 in §3.5).
        rx_delay_ms: Latency added to every inbound byte (host → device), in ms; past the lease
            or the watchdog this makes the device safe-stop.
        tx_bit_error_rate: Probability that each outbound bit flips.
        drop_prob: Probability that an outbound frame is lost.
        duplicate_prob: Probability that an outbound frame is sent twice.
        reorder_prob: Probability that an outbound frame is held and sent after the next one.
        delay_ms: Extra latency added to every outbound frame (ms).
        ack_delay_ms: Extra latency added to replies only (ACK, NACK, ARMED, CAPS), in ms.
        garbage_prob: Probability that a burst of random bytes (stray 0x00 included) precedes an
            outbound frame.
        garbage_bytes: Length of each garbage burst.
    """

    rx_bit_error_rate: float = 0.0
    rx_delay_ms: float = 0.0
    tx_bit_error_rate: float = 0.0
    drop_prob: float = 0.0
    duplicate_prob: float = 0.0
    reorder_prob: float = 0.0
    delay_ms: float = 0.0
    ack_delay_ms: float = 0.0
    garbage_prob: float = 0.0
    garbage_bytes: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") or f.name.endswith("_rate"):
                if not 0.0 <= value <= 1.0:
                    raise ConfigError(f"Expected {f.name} in [0, 1], actual {value!r}")
            elif f.name.endswith("_ms") and not 0.0 <= value <= 10_000.0:
                raise ConfigError(f"Expected {f.name} in [0, 10000] ms, actual {value!r}")
        if not 1 <= self.garbage_bytes <= 4096:
            raise ConfigError(f"Expected garbage_bytes in [1, 4096], actual {self.garbage_bytes}")

    @property
    def any_active(self) -> bool:
        """Whether any knob is on."""
        return self != FaultConfig(garbage_bytes=self.garbage_bytes)


def flip_bits(data: bytes, bit_error_rate: float, rng: np.random.Generator) -> tuple[bytes, int]:
    """Flip each bit of ``data`` independently with probability ``bit_error_rate``.

    Returns:
        ``(data, n_flipped)``.
    """
    if bit_error_rate <= 0.0 or not data:
        return data, 0
    n_bits = len(data) * 8
    n_flips = int(rng.binomial(n_bits, bit_error_rate))
    if n_flips == 0:
        return data, 0
    out = bytearray(data)
    for bit in rng.choice(n_bits, size=n_flips, replace=False):
        out[int(bit) // 8] ^= 1 << (int(bit) % 8)
    return bytes(out), n_flips


class FaultInjector:
    """Applies a :class:`FaultConfig` to the emulator's traffic.

    Args:
        config: Initial knobs.
        seed: Seed of the generator behind every random draw.
    """

    def __init__(self, config: FaultConfig | None = None, seed: int = 0) -> None:
        self._config = config or FaultConfig()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._queue: list[tuple[float, int, bytes]] = []
        self._rx_queue: list[tuple[float, int, bytes]] = []
        self._counter = 0
        self._held: bytes | None = None
        self.counts: dict[str, int] = {
            "rx_bits_flipped": 0,
            "tx_bits_flipped": 0,
            "dropped": 0,
            "duplicated": 0,
            "reordered": 0,
            "garbage_bursts": 0,
        }

    @property
    def config(self) -> FaultConfig:
        """The knobs in force."""
        return self._config

    def configure(self, config: FaultConfig | None = None, **changes: Any) -> None:
        """Replace the knobs, or change some of them (``configure(drop_prob=0.1)``)."""
        with self._lock:
            self._config = replace(config or self._config, **changes)
        log.info(
            "faults_configured",
            **{f.name: getattr(self._config, f.name) for f in fields(self._config)},
        )

    def inbound(self, data: bytes, now_s: float) -> list[bytes]:
        """Take bytes from the line; return the inbound bytes now due (after flips and delay)."""
        with self._lock:
            out, n = flip_bits(data, self._config.rx_bit_error_rate, self._rng)
            self.counts["rx_bits_flipped"] += n
            if out:
                self._counter += 1
                due = now_s + self._config.rx_delay_ms / 1000.0
                heapq.heappush(self._rx_queue, (due, self._counter, out))
        return self.due_inbound(now_s)

    def due_inbound(self, now_s: float) -> list[bytes]:
        """Inbound bytes whose (delayed) arrival time has come, in order."""
        out: list[bytes] = []
        with self._lock:
            while self._rx_queue and self._rx_queue[0][0] <= now_s:
                out.append(heapq.heappop(self._rx_queue)[2])
        return out

    def _push(self, due_s: float, data: bytes) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (due_s, self._counter, data))

    def outbound(self, msg_type: int, wire: bytes, now_s: float) -> None:
        """Schedule one encoded outbound frame (delimiter included) through the knobs."""
        with self._lock:
            c = self._config
            rng = self._rng
            if c.drop_prob and rng.random() < c.drop_prob:
                self.counts["dropped"] += 1
                return
            if c.garbage_prob and rng.random() < c.garbage_prob:
                self.counts["garbage_bursts"] += 1
                self._push(
                    now_s, rng.integers(0, 256, size=c.garbage_bytes, dtype=np.uint8).tobytes()
                )
            data, n = flip_bits(wire, c.tx_bit_error_rate, rng)
            self.counts["tx_bits_flipped"] += n
            delay_s = c.delay_ms / 1000.0
            if msg_type in _REPLY_TYPES:
                delay_s += c.ack_delay_ms / 1000.0
            copies = 2 if c.duplicate_prob and rng.random() < c.duplicate_prob else 1
            if copies == 2:
                self.counts["duplicated"] += 1
            if c.reorder_prob and self._held is None and rng.random() < c.reorder_prob:
                self.counts["reordered"] += 1
                self._held = data * copies
                return
            self._push(now_s + delay_s, data * copies)
            if self._held is not None:
                self._push(now_s + delay_s, self._held)
                self._held = None

    def inject_raw(self, data: bytes, now_s: float) -> None:
        """Put arbitrary bytes on the outbound line (garbage, a half frame, an oversized one)."""
        with self._lock:
            self._push(now_s, data)

    def due(self, now_s: float) -> list[bytes]:
        """Outbound bytes whose time has come, in order."""
        out: list[bytes] = []
        with self._lock:
            while self._queue and self._queue[0][0] <= now_s:
                out.append(heapq.heappop(self._queue)[2])
        return out

    def next_due_s(self) -> float | None:
        """When the next queued bytes (either direction) fall due, if any."""
        with self._lock:
            times = [q[0][0] for q in (self._queue, self._rx_queue) if q]
            return min(times) if times else None

    def clear(self) -> None:
        """Drop everything queued or held (the line was unplugged)."""
        with self._lock:
            self._queue.clear()
            self._rx_queue.clear()
            self._held = None
