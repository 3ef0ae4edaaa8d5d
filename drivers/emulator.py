"""The device emulator: firmware state machine + tissue + fault injection on a real port.

One loop (a thread in tests, the main thread of ``neuroloop-device-emulator``) waits on the port
with a short timeout, feeds received bytes through the fault injector and the frame decoder into
:class:`~drivers.firmware.DeviceFirmware`, ticks the firmware's ramps and timers on the monotonic
clock, advances the tissue one window per ``window_ms`` of wall-clock time with the output the
device is delivering, and writes the frames that fall due. Requests from other threads (reset,
unplug, hardware e-stop, link down) are queued and run inside the loop.
"""

from __future__ import annotations

import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog

from core.errors import DeviceIOError, NeuroLoopError
from drivers.faults import FaultInjector
from drivers.firmware import DeviceFirmware
from drivers.framing import FrameDecoder, encode_frame
from drivers.messages import DeviceState, FaultBits
from drivers.ports import EmulatorPort
from drivers.tissue import Tissue
from simulator.config import NetworkConfig
from simulator.warmup import tiny, warm_up_network, watching

log = structlog.get_logger()


@dataclass(frozen=True)
class EmulatorSnapshot:
    """A consistent view of the emulator for tests and monitors.

    Attributes:
        state: Device state.
        fault_bits: Latched faults.
        amp_ua: Amplitude being delivered (µA).
        target_amp_ua: Amplitude being ramped to (µA).
        boot_id: Current boot id.
        last_valid_rx_s: Emulator clock of the last accepted host frame.
        fault_s: Emulator clock when the last fault latched (``None`` if none since boot).
        output_off_s: Emulator clock when the output last reached zero after being on.
        max_tick_gap_s: Longest gap between two loop iterations so far (host scheduling noise).
        bad_frames: Frames the decoder dropped.
        tissue_windows: Tissue windows simulated.
        features: Last sensed features.
    """

    state: DeviceState
    fault_bits: FaultBits
    amp_ua: int
    target_amp_ua: int
    boot_id: int
    last_valid_rx_s: float
    fault_s: float | None
    output_off_s: float | None
    max_tick_gap_s: float
    bad_frames: int
    tissue_windows: int
    features: dict[str, float]


class DeviceEmulator:
    """Runs a :class:`DeviceFirmware` on a port.

    Args:
        port: The line (pty or TCP).
        firmware: The state machine; a default one is made if omitted.
        tissue: The emulated patient, or ``None`` (no sensed features).
        faults: Fault injector; a disabled one is made if omitted.
        tick_ms: Loop period (ramps and timers are resolved to this).
    """

    def __init__(
        self,
        port: EmulatorPort,
        firmware: DeviceFirmware | None = None,
        tissue: Tissue | None = None,
        faults: FaultInjector | None = None,
        tick_ms: float = 2.0,
    ) -> None:
        self.port = port
        self.firmware = firmware or DeviceFirmware(now_s=time.monotonic())
        self.tissue = tissue
        self.faults = faults or FaultInjector()
        self._tick_s = tick_ms / 1000.0
        self._decoder = FrameDecoder()
        self._requests: queue.Queue[Callable[[float], None]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_tick_s = time.monotonic()
        self._next_tissue_s = self._last_tick_s
        self.max_tick_gap_s = 0.0
        self.fault_s: float | None = None
        self.output_off_s: float | None = None
        self._was_on = False
        self._last_faults = FaultBits.NONE
        self.unplugged = False

    # --------------------------------------------------------------------------- lifecycle
    def start(self) -> DeviceEmulator:
        """Run the loop in a daemon thread."""
        if self._thread is None:
            self.warm_up()
            self._thread = threading.Thread(target=self.run, name="device-emulator", daemon=True)
            self._thread.start()
        return self

    def warm_up(self) -> None:
        """Compile the tissue's kernels and simulate its first window now, before serving.

        The kernels compile through the simulator's one warm-up
        (:func:`simulator.warmup.warm_up_network`, on a tiny copy of the tissue's network,
        each compilation logged), so the loop never stalls on a compilation; the first window
        then runs at once, so the first STATUS already carries a sensed observation.
        """
        if self.tissue is not None and self.tissue.windows == 0:
            config = getattr(self.tissue.network, "config", None)
            if isinstance(config, NetworkConfig):
                with watching("warm-up"):
                    warm_up_network(tiny(config))
            with self._lock:
                self._step_tissue(time.monotonic())
                self._next_tissue_s = time.monotonic()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after its current iteration (safe from signal handlers)."""
        self._stop.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and release the port; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.port.close()

    def __enter__(self) -> DeviceEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ requests
    def request(self, action: Callable[[float], None]) -> None:
        """Run ``action(now_s)`` inside the loop at its next iteration."""
        self._requests.put(action)

    def request_reset(self) -> None:
        """Reboot the device (new boot id, DISARMED, output off at once)."""
        self.request(self._reset)

    def request_unplug(self) -> None:
        """Pull the cable: output stops (link down) and the port closes."""
        self.request(self._unplug)

    def request_link_down(self) -> None:
        """Signal a DTR drop / UART break without closing the port."""
        self.request(lambda now: self._send(self.firmware.link_down(now), now))

    def request_hardware_estop(self) -> None:
        """Press the hardware e-stop: output off at once, no ramp, latched."""

        def press(now: float) -> None:
            fw = self.firmware
            fw.amp_ua_f = 0.0
            fw.target_amp_ua = 0
            out = fw.safe_stop(FaultBits.ESTOP, now)
            self._send(out, now)

        self.request(press)

    def request_fault(self, bits: FaultBits) -> None:
        """Trip a hardware monitor (over-current, impedance, …): safe stop and latch ``bits``."""
        self.request(lambda now: self._send(self.firmware.safe_stop(bits, now), now))

    def inject_raw(self, data: bytes) -> None:
        """Put raw bytes on the line towards the host (garbage, half or oversized frames)."""
        self.request(lambda now: self.faults.inject_raw(data, now))

    def _reset(self, now: float) -> None:
        self._decoder.reset()
        self.faults.clear()
        self._send(self.firmware.reboot(now), now)

    def _unplug(self, now: float) -> None:
        log.warning("emulator_unplug", amp_ua=self.firmware.amp_ua)
        fw = self.firmware
        fw.amp_ua_f = 0.0  # no power, no output
        fw.target_amp_ua = 0
        fw.safe_stop(FaultBits.LINK_DOWN, now)
        self.faults.clear()
        self.port.close()
        self.unplugged = True

    # ---------------------------------------------------------------------------------- loop
    def snapshot(self) -> EmulatorSnapshot:
        """Current state, read under the loop's lock."""
        with self._lock:
            fw = self.firmware
            return EmulatorSnapshot(
                state=fw.state,
                fault_bits=fw.fault_bits,
                amp_ua=fw.amp_ua,
                target_amp_ua=fw.target_amp_ua,
                boot_id=fw.boot_id,
                last_valid_rx_s=fw.last_valid_rx_s,
                fault_s=self.fault_s,
                output_off_s=self.output_off_s,
                max_tick_gap_s=self.max_tick_gap_s,
                bad_frames=fw.bad_frames,
                tissue_windows=self.tissue.windows if self.tissue else 0,
                features=dict(fw.sense or {}),
            )

    def _send(self, frames: list[Any], now: float) -> None:
        for frame in frames:
            self.faults.outbound(frame.msg_type, encode_frame(frame), now)

    def run(self) -> None:
        """Serve until :meth:`close` (or a stop request); never raises on wire bytes."""
        log.info("emulator_started", url=self.port.url, boot_id=self.firmware.boot_id)
        self._last_tick_s = time.monotonic()
        with self._lock:
            # Power-on announcement (nobody may be listening yet; hosts flush on open).
            self._send(self.firmware.announce(self._last_tick_s), self._last_tick_s)
        while not self._stop.is_set():
            fds = self.port.fds()
            timeout = self._tick_s
            due = self.faults.next_due_s()
            if due is not None:
                timeout = max(0.0, min(timeout, due - time.monotonic()))
            if fds:
                readable, _, _ = select.select(fds, [], [], timeout)
            else:
                time.sleep(timeout)
                readable = []
            with self._lock:
                try:
                    self._iterate(readable)
                except (DeviceIOError, OSError) as err:
                    # A broken line is a pulled cable: the firmware keeps running (its output
                    # stops through link-down and the watchdog), the port is released.
                    log.error("emulator_port_failed", error=str(err))
                    self._send(self.firmware.link_down(time.monotonic()), time.monotonic())
                    self.faults.clear()
                    self.port.close()
                    self.unplugged = True
        log.info("emulator_stopped")

    def _iterate(self, readable: list[int]) -> None:
        now = time.monotonic()
        fw = self.firmware
        chunks: list[bytes] = []
        for fd in readable:
            data = self.port.read(fd)
            if data is None:
                self._decoder.reset()
                self._send(fw.link_down(now), now)
            elif data:
                chunks += self.faults.inbound(data, now)
        if not chunks:
            chunks = self.faults.due_inbound(now)
        for chunk in chunks:
            frames, bad = self._decoder.feed(chunk)
            for b in bad:
                fw.bad_frame(b.code, b.detail)
            for frame in frames:
                self._send(fw.handle(frame, now), now)
        while True:
            try:
                action = self._requests.get_nowait()
            except queue.Empty:
                break
            action(now)
        dt = now - self._last_tick_s
        self.max_tick_gap_s = max(self.max_tick_gap_s, dt)
        self._last_tick_s = now
        self._send(fw.tick(now, dt), now)
        self._track(now)
        if self.tissue is not None and now >= self._next_tissue_s:
            self._step_tissue(now)
        for data in self.faults.due(now):
            self.port.write(data)

    def _track(self, now: float) -> None:
        fw = self.firmware
        if fw.fault_bits & ~self._last_faults:
            self.fault_s = now
        self._last_faults = fw.fault_bits
        if self._was_on and not fw.output_on:
            self.output_off_s = now
        self._was_on = fw.output_on

    def _step_tissue(self, now: float) -> None:
        assert self.tissue is not None
        fw = self.firmware
        window_s = self.tissue.window_ms / 1000.0
        try:
            obs = self.tissue.step(amp_ua=fw.amp_ua, pw_us=fw.pw_us, freq_dhz=fw.freq_dhz)
        except NeuroLoopError as err:
            log.error("emulator_tissue_error", error=str(err))
            fw.sense = None
            self._send(fw.safe_stop(FaultBits.SENSOR, now), now)
            self._next_tissue_s = now + window_s
            return
        fw.sense = obs
        fw.t_tissue_ms = int(self.tissue.t_ms)
        self._next_tissue_s += window_s
        if self._next_tissue_s < now - 5 * window_s:
            log.warning("emulator_tissue_lagging", behind_s=round(now - self._next_tissue_s, 3))
            self._next_tissue_s = now
