"""The simulator backend: the FTSTS network served behind the NeuroLoop wire protocol.

:class:`SimulatorBackend` subclasses :class:`protocol.backend.Backend`, so the base class has
already validated every request, admitted one controlling client and checked each stimulus
against the advertised ranges and the configured envelope before a hook here runs. The hooks
map the protocol onto :class:`simulator.network.Network`:

* ``configure`` options: ``network`` (the name of an open-loop protocol whose network to
  simulate, default ``ftsts-desync``: the paper's Fig 3 network; see
  ``neuroloop-sim protocols``),
  ``n_scale`` (population scale of that network, 1.0 = the paper's 1600 E / 400 I),
  ``stim_noise_e_mv`` (SD of the released code's stimulus noise on E cells while stimulating;
  default 0 — off — because its SD does not scale with the stimulation, so a closed-loop policy
  could desynchronise with near-zero charge; 10 reproduces the paper's Fig 3 file),
  ``semantics`` (``paper`` | ``clean``), ``seed`` (default seed of ``reset``),
  ``polarity`` (``desync`` | ``sync``, the pulse polarity of every step) and what the implant
  senses (:class:`simulator.sensing.SensingConfig`, defaults in ``docs/simulator.md#sensing``):
  ``sensing_units`` (recorded units), ``sensing_noise_uv_per_sqrt_hz`` (amplifier noise),
  ``sensing_band_centre_hz`` (the network band's centre; 0: calibrated from the spectrum) and
  ``sensing_blank_post_ms`` (blanking after each pulse);
* ``step`` stimulus: ``amplitude_mv`` (model drive, 0 = off), ``frequency_hz``,
  ``pulse_width_us`` (per phase) and ``ei_offset_ms`` (E–I waveform offset);
* the observation is :meth:`simulator.network.WindowStats.observation`.

Run it with ``neuroloop-sim serve --bind ADDR`` or ``python -m simulator.server --bind ADDR``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable, Mapping

import structlog

from core.errors import ConfigError, SafetyLimitError
from core.logs import configure_from_args
from core.threads import add_threads_option, check_threads, warn_if_oversubscribed
from protocol.backend import Backend, StepResult
from protocol.schema import Capabilities, ConfigValue, ParamSpec, SpikeWindow
from protocol.serve_cli import EPILOG, add_serve_arguments, run_backend
from simulator.config import CHUNK_MS, NetworkConfig
from simulator.experiments import DEFAULT_NETWORK, EXPERIMENTS
from simulator.network import OBSERVATION_FIELDS, Network
from simulator.sensing import SensingConfig
from simulator.stimulus import (
    AMPLITUDE_RANGE_MV,
    EI_OFFSET_RANGE_MS,
    FREQUENCY_RANGE_HZ,
    PULSE_WIDTH_RANGE_US,
    Polarity,
    Stimulus,
    stimulus_for,
)
from simulator.warmup import CompileWatch, warm_up

#: Population scale accepted by the ``n_scale`` option (1.0 = 1600 E / 400 I).
N_SCALE_RANGE = (0.005, 4.0)
#: Longest window one ``step`` may integrate (ms).
MAX_STEP_MS = 10_000.0

#: ``configure`` options → (SensingConfig field, lowest, highest value accepted).
SENSING_OPTIONS: dict[str, tuple[str, float, float]] = {
    "sensing_units": ("n_units", 0, 1000),
    "sensing_noise_uv_per_sqrt_hz": ("noise_uv_per_sqrt_hz", 0.0, 100.0),
    "sensing_band_centre_hz": ("band_centre_hz", 0.0, 500.0),
    "sensing_blank_post_ms": ("blank_post_ms", 0.0, 10.0),
}


SIM_CAPABILITIES = Capabilities(
    stim_params=(
        ParamSpec("amplitude_mv", "mV", "amplitude", *AMPLITUDE_RANGE_MV),
        ParamSpec("frequency_hz", "Hz", "frequency", *FREQUENCY_RANGE_HZ),
        ParamSpec("pulse_width_us", "us", "pulse_width", *PULSE_WIDTH_RANGE_US),
        ParamSpec("ei_offset_ms", "ms", "other", *EI_OFFSET_RANGE_MS),
    ),
    observation_fields=OBSERVATION_FIELDS,
    control_period_ms=CHUNK_MS,
    min_duration_ms=NetworkConfig().dt_ms,
    max_duration_ms=MAX_STEP_MS,
    supports_spikes=True,
    config_options=(
        "network",
        "n_scale",
        "semantics",
        "stim_noise_e_mv",
        "seed",
        "polarity",
        *SENSING_OPTIONS,
    ),
)


#: The ``configure`` options that choose the simulated network.
NETWORK_OPTIONS = ("network", "n_scale", "semantics", "stim_noise_e_mv")


def _str_option(
    options: Mapping[str, ConfigValue], name: str, choices: tuple[str, ...], default: str
) -> str:
    value = options.get(name, default)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"Expected option {name} in {'|'.join(choices)}, actual {value!r}")
    return value


def _num_option(
    options: Mapping[str, ConfigValue], name: str, lo: float, hi: float, default: float
) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(
            f"Expected option {name} as a number in [{lo:g}, {hi:g}], actual {value!r}"
        )
    return float(value)


def sensing_from_options(options: Mapping[str, ConfigValue]) -> SensingConfig | None:
    """The sensor the ``sensing_*`` options ask for (``None``: none given, the default sensor).

    Raises:
        ConfigError: A value out of range or of the wrong type, naming the option.
    """
    changes: dict[str, float | int | None] = {}
    for option, (field, lo, hi) in SENSING_OPTIONS.items():
        if option not in options:
            continue
        value = _num_option(options, option, lo, hi, 0.0)
        if field == "n_units":
            raw = options[option]
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise ConfigError(f"Expected option {option} as an integer, actual {raw!r}")
            changes[field] = raw
        elif field == "band_centre_hz":
            changes[field] = None if value == 0.0 else value
        else:
            changes[field] = value
    return SensingConfig().replace(**changes) if changes else None


class SimulatorBackend(Backend):
    """Serve :class:`simulator.network.Network` windows as protocol steps.

    Args:
        session_timeout_s: A session with no request for this long ends.
        clock: Monotonic clock in seconds (injectable for tests).
        network_factory: Builds the network from a config (the real :class:`Network` unless a
            test injects another implementation of the same surface).
        network_config: A fixed network to simulate (any :class:`NetworkConfig`, e.g. a small
            one for tests, or an environment's overrides); ``configure`` then refuses the
            options that choose a network (``network``, ``n_scale``, ``semantics``,
            ``stim_noise_e_mv``) and accepts ``seed`` and ``polarity``.
        threads: Threads that integrate the network (``Network.threads``: an integer, or
            ``"auto"``; the same results on any count).
    """

    kind = "sim"

    def __init__(
        self,
        *,
        session_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        network_factory: Callable[[NetworkConfig], Network] = Network,
        network_config: NetworkConfig | None = None,
        threads: int | str = 1,
    ) -> None:
        super().__init__(session_timeout_s=session_timeout_s, clock=clock)
        self._factory = network_factory
        self._fixed_config = network_config
        self._threads = check_threads(threads)
        self._network: Network | None = None
        self._config: NetworkConfig | None = None
        self._seed = 0
        self._polarity: Polarity = "desync"
        self._log = structlog.get_logger().bind(backend="SimulatorBackend", kind="sim")

    @property
    def network(self) -> Network | None:
        """The simulated network (``None`` before ``configure``)."""
        return self._network

    @property
    def network_config(self) -> NetworkConfig | None:
        """The configured network parameters (``None`` before ``configure``)."""
        return self._config

    def capabilities(self) -> Capabilities:
        """The simulator's ranges, observation fields and options."""
        return SIM_CAPABILITIES

    def warm_up(self) -> float:
        """Compile every kernel a session uses (:func:`simulator.warmup.warm_up`); return s."""
        return warm_up(self._factory, threads=self._threads)

    # ------------------------------------------------------------------------- hooks

    def _on_configure(self, options: Mapping[str, ConfigValue], control_period_ms: float) -> None:
        fixed = self._fixed_config
        if fixed is not None:
            chosen = sorted(set(options) & set(NETWORK_OPTIONS))
            if chosen:
                raise ConfigError(
                    f"Expected no network options for a backend built with a fixed network "
                    f"(n_e {fixed.n_e}, n_i {fixed.n_i}), actual {chosen}"
                )
        network = _str_option(options, "network", tuple(EXPERIMENTS), DEFAULT_NETWORK)
        n_scale = _num_option(options, "n_scale", *N_SCALE_RANGE, 1.0)
        semantics = _str_option(options, "semantics", ("paper", "clean"), "paper")
        if fixed is not None:
            semantics = fixed.semantics
        polarity = _str_option(options, "polarity", ("desync", "sync"), "desync")
        seed = options.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**63 - 1:
            raise ConfigError(
                f"Expected option seed as an integer in [0, 2**63 - 1], actual {seed!r}"
            )
        periods = control_period_ms / CHUNK_MS
        if semantics == "paper" and abs(periods - round(periods)) > 1e-9:
            raise ConfigError(
                f"Expected control_period_ms to be a multiple of {CHUNK_MS:g} ms in paper "
                f"semantics, actual {control_period_ms!r}"
            )
        if fixed is not None:
            config = fixed
        else:
            config = EXPERIMENTS[network].network_config(semantics, n_scale)  # type: ignore[arg-type]
            # Off unless asked for: the released code's stimulus noise has a fixed SD whenever
            # any stimulation is on, so a closed-loop policy could desynchronise with
            # near-zero charge.
            noise = _num_option(options, "stim_noise_e_mv", 0.0, 100.0, 0.0)
            config = config.replace(stim_noise_e_mv=noise)
        sensing = sensing_from_options(options)
        self._network = self._factory(config)
        if sensing is not None:
            self._network.set_sensing(sensing)
        if self._threads != 1:
            self._network.threads = self._threads
        self._config = config
        self._seed = seed
        self._polarity = "sync" if polarity == "sync" else "desync"
        self._log.info(
            "simulator_configured",
            network="fixed" if fixed is not None else network,
            n_e=config.n_e,
            n_i=config.n_i,
            semantics=semantics,
            seed=seed,
            polarity=polarity,
            sensing="default" if sensing is None else sensing,
            threads=self._threads,
        )

    def _on_reset(self, seed: int | None) -> float:
        net = self._require_network()
        net.reset(seed=self._seed if seed is None else seed)
        return float(net.t_ms)

    def _on_step(
        self, stimulus: Mapping[str, float] | None, duration_ms: float, want_spikes: bool
    ) -> StepResult:
        net = self._require_network()
        setting: Stimulus | None = None
        if stimulus is not None:
            try:
                setting = self._setting(stimulus)
            except ConfigError as err:
                raise SafetyLimitError(str(err)) from err
        stats = net.advance(setting, duration_ms)
        spikes = (
            SpikeWindow.from_arrays(stats.spike_times_ms, stats.spike_neurons)
            if want_spikes
            else None
        )
        return StepResult(stats.observation(), float(stats.t_end_ms), spikes)

    def _setting(self, stimulus: Mapping[str, float]) -> Stimulus | None:
        """The model stimulus of a step's parameters (a subclass may speak other units).

        Raises:
            ConfigError: The parameters make no valid stimulus.
        """
        return stimulus_for(
            amplitude_mv=stimulus["amplitude_mv"],
            frequency_hz=stimulus["frequency_hz"],
            pulse_width_us=stimulus["pulse_width_us"],
            polarity=self._polarity,
            ei_offset_ms=stimulus["ei_offset_ms"],
        )

    def _on_stop(self, reason: str) -> None:
        # The simulated tissue only receives pulses inside step windows, so stopping needs no
        # action beyond the base class's bookkeeping; log it for the session record.
        self._log.debug("simulator_stop", reason=reason)

    def _require_network(self) -> Network:
        if self._network is None:
            raise ConfigError("Expected configure before reset/step, actual no network")
        return self._network


def build_parser(prog: str = "neuroloop-sim serve") -> argparse.ArgumentParser:
    """The ``serve`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=textwrap.fill(
            "Serve the FTSTS spiking-network simulator over the NeuroLoop protocol (ZeroMQ + "
            "msgpack, docs/protocol.md). One controller at a time opens a session, sends "
            "configure (n_scale, semantics paper|clean, seed, polarity desync|sync and its "
            "safety envelope), reset, then one step per control window (default 20 ms) "
            "carrying amplitude_mv 0-400 (model drive, 0 = off), frequency_hz 1-250, "
            "pulse_width_us 10-5000 and ei_offset_ms -50..50; each step returns the "
            "window's synchrony, voltage statistics, E->I weight, rates, chi and charge. "
            "Stimulation outside the advertised ranges or the controller's envelope is "
            "refused and stops the run.",
            width=92,
        ),
        epilog=EPILOG + "\nexample:\n  neuroloop-sim serve --bind ipc:///tmp/neuroloop-sim.sock\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(parser)
    add_threads_option(parser)
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="Skip compiling the Numba kernels before the ready line (by default the server "
        "compiles first, so the first step is not seconds late).",
    )
    return parser


def serve_main(argv: list[str] | None = None) -> int:
    """Run ``neuroloop-sim serve``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_from_args(args)
    try:
        backend = SimulatorBackend(session_timeout_s=args.session_timeout_s, threads=args.threads)
        warn_if_oversubscribed(args.threads, 1)
    except ConfigError as err:
        parser.error(str(err))
    if not args.no_warmup:
        backend.warm_up()
    # From here on a compilation would delay a waiting controller: name it if one happens.
    watch = CompileWatch("session").install()
    try:
        return run_backend(backend, args)
    finally:
        watch.uninstall()


if __name__ == "__main__":
    sys.exit(serve_main())
