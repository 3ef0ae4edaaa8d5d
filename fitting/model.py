"""Loading a model to fit: the bundled reference, a Python builder, or a hoc template.

A :class:`ModelSpec` is a small picklable description; :func:`build_model` turns it into a
:class:`BuiltModel` *inside the process that simulates* (a worker), never in a parent that later
forks. Locations (sections and section lists) are discovered by name, and every range
PARAMETER of every inserted density mechanism is listed by :func:`discover_parameters`.

Model strings accepted by :func:`parse_model`:

* ``reference`` — the bundled five-compartment cell (:mod:`fitting.reference`).
* ``pkg.module:function`` or ``path/to/file.py:function`` — a Python builder returning a cell
  object; its locations are the ``section_lists`` mapping if it has one, else every
  ``Section`` or list of sections among its attributes.
* ``path/to/cell.hoc:TemplateName`` — a hoc template; ``.mod`` files beside the hoc file (and in
  any extra ``mod_dirs``) are compiled with ``nrnivmodl`` into a content-hashed cache.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import FittingError
from fitting.mechanisms import compile_mechanisms, load_compiled
from fitting.parameters import ParameterSpec

REFERENCE_BUILDER = "fitting.reference:build_reference_cell"
_INDEX = re.compile(r"\[\d+\]$")


@dataclass(frozen=True)
class ModelSpec:
    """Picklable description of a model.

    Attributes:
        kind: ``python`` or ``hoc``.
        target: ``module:function`` / ``file.py:function`` or ``file.hoc:Template``.
        mod_dirs: Directories of ``.mod`` files to compile and load.
        compiled_dir: Filled by :meth:`prepare`: the compiled mechanism directory.
    """

    kind: str
    target: str
    mod_dirs: tuple[str, ...] = ()
    compiled_dir: str | None = None

    def prepare(self, cache_dir: Path | None = None) -> ModelSpec:
        """Compile the mod files (cached) and return a spec workers can load directly."""
        if not self.mod_dirs:
            return self
        compiled = compile_mechanisms([Path(d) for d in self.mod_dirs], cache_dir)
        return ModelSpec(self.kind, self.target, self.mod_dirs, str(compiled) if compiled else None)


def parse_model(text: str, mod_dirs: Sequence[str | Path] = ()) -> ModelSpec:
    """Parse a ``--model`` string (see the module docstring).

    Raises:
        FittingError: If the string has none of the accepted forms or a file is missing.
    """
    extra = tuple(str(Path(d).resolve()) for d in mod_dirs)
    if text == "reference":
        return ModelSpec("python", REFERENCE_BUILDER, extra)
    path_part, colon, name = text.rpartition(":")
    if not colon or not path_part or not name:
        raise FittingError(
            "Expected --model to be 'reference', 'module:function', 'file.py:function' or "
            f"'file.hoc:TemplateName', actual {text!r}"
        )
    if path_part.endswith(".hoc"):
        hoc = Path(path_part)
        if not hoc.is_file():
            raise FittingError(f"Expected a hoc file at {hoc}, actual missing")
        beside = hoc.resolve().parent
        dirs = extra if not any(beside.glob("*.mod")) else (str(beside), *extra)
        return ModelSpec("hoc", f"{hoc.resolve()}:{name}", tuple(dict.fromkeys(dirs)))
    if path_part.endswith(".py") and not Path(path_part).is_file():
        raise FittingError(f"Expected a Python builder file at {path_part}, actual missing")
    target = f"{Path(path_part).resolve()}:{name}" if path_part.endswith(".py") else text
    return ModelSpec("python", target, extra)


@dataclass
class BuiltModel:
    """A model instantiated in this process.

    Attributes:
        cell: The object the builder or template returned (kept alive here).
        locations: Location name → sections.
        defaults: Each parameter's value before it was first set (discovery reports these).
    """

    cell: Any
    locations: dict[str, list[Any]] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)

    def sections(self, location: str) -> list[Any]:
        """The sections at ``location``, with a clear error listing the known names."""
        try:
            return self.locations[location]
        except KeyError:
            raise FittingError(
                f"Expected a section or section list in {sorted(self.locations)}, "
                f"actual {location!r}"
            ) from None

    def set_parameters(self, values: Mapping[str, float]) -> None:
        """Set range variables, e.g. ``{"soma.gnabar_hh": 0.12}``, on every segment."""
        for name, value in values.items():
            location, _, variable = name.partition(".")
            for sec in self.sections(location):
                try:
                    if name not in self.defaults:
                        self.defaults[name] = float(getattr(sec(0.5), variable))
                    for seg in sec:
                        setattr(seg, variable, float(value))
                except (AttributeError, NameError, LookupError) as err:
                    raise FittingError(
                        f"Expected range variable {variable!r} in section {sec.name()} "
                        f"(location {location!r}), actual not inserted there"
                    ) from err


def _load_callable(target: str) -> Any:
    module_part, _, func_name = target.rpartition(":")
    if module_part.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(module_part).stem, module_part)
        if spec is None or spec.loader is None:
            raise FittingError(f"Expected an importable Python file, actual {module_part}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as err:
            raise FittingError(f"Expected an importable module {module_part!r}: {err}") from err
    func = getattr(module, func_name, None)
    if not callable(func):
        raise FittingError(f"Expected a callable {func_name!r} in {module_part}, actual none")
    return func


def _short_name(section: Any) -> str:
    return str(section.name()).rsplit(".", 1)[-1]


def _locations_from_python(cell: Any) -> dict[str, list[Any]]:
    from neuron import nrn

    explicit = getattr(cell, "section_lists", None)
    if isinstance(explicit, Mapping):
        return {str(k): list(v) for k, v in explicit.items()}
    found: dict[str, list[Any]] = {}
    for attr, value in vars(cell).items():
        if isinstance(value, nrn.Section):
            found[attr] = [value]
        elif (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, nrn.Section) for v in value)
        ):
            found[attr] = list(value)
    if not found:
        raise FittingError(
            "Expected the builder's cell to have a section_lists mapping or Section attributes, "
            "actual none"
        )
    return found


def _locations_from_hoc(cell: Any) -> dict[str, list[Any]]:
    from neuron import h

    found: dict[str, list[Any]] = {}
    everything = [sec for sec in h.allsec() if sec.cell() is not None and sec.cell() == cell]
    for sec in everything:
        short = _short_name(sec)
        found.setdefault(short, []).append(sec)
        base = _INDEX.sub("", short)
        if base != short:
            found.setdefault(base, []).append(sec)
    for attr in dir(cell):
        value = getattr(cell, attr, None)
        if value is not None and type(value).__name__ == "SectionList" and attr not in found:
            found[attr] = list(value)
    found.setdefault("all", everything)
    return found


def build_model(spec: ModelSpec) -> BuiltModel:
    """Instantiate ``spec`` in this process (call only inside a simulating worker).

    Raises:
        FittingError: If the builder, template or mechanisms cannot be loaded.
    """
    from neuron import h

    h.load_file("stdrun.hoc")
    if spec.compiled_dir is not None:
        load_compiled(Path(spec.compiled_dir))
    elif spec.mod_dirs:
        prepared = spec.prepare()
        if prepared.compiled_dir is not None:
            load_compiled(Path(prepared.compiled_dir))
    if spec.kind == "python":
        cell = _load_callable(spec.target)()
        return BuiltModel(cell, _locations_from_python(cell))
    hoc_file, _, template = spec.target.rpartition(":")
    if not hasattr(h, template) and not h.load_file(hoc_file):
        raise FittingError(f"Expected a loadable hoc file, actual failure loading {hoc_file}")
    if not hasattr(h, template):
        raise FittingError(f"Expected template {template!r} in {hoc_file}, actual not defined")
    cell = getattr(h, template)()
    return BuiltModel(cell, _locations_from_hoc(cell))


def _parameter_names(mechanism: str) -> list[str]:
    from neuron import h

    standard = h.MechanismStandard(mechanism, 1)
    name_ref = h.ref("")
    names = []
    for index in range(int(standard.count())):
        standard.name(name_ref, index)
        names.append(str(name_ref[0]))
    return names


@dataclass(frozen=True)
class DiscoveredParameter:
    """A range PARAMETER found on a location.

    Attributes:
        name: ``location.variable``.
        mechanism: The density mechanism it belongs to.
        value: Its current value at the first section's middle.
    """

    name: str
    mechanism: str
    value: float

    def default_spec(self, factor: float = 5.0) -> ParameterSpec | None:
        """Log-scaled bounds ``value/factor .. value*factor`` for positive values, else None."""
        if self.value <= 0:
            return None
        location, _, variable = self.name.partition(".")
        return ParameterSpec(location, variable, self.value / factor, self.value * factor, True)

    @property
    def is_conductance(self) -> bool:
        """True for names that look like a maximal conductance (``g...``) with a positive value."""
        return self.name.partition(".")[2].startswith("g") and self.value > 0


def discover_parameters(model: BuiltModel) -> list[DiscoveredParameter]:
    """Every range PARAMETER of mechanisms inserted in all sections of each location."""
    result: list[DiscoveredParameter] = []
    for location, sections in sorted(model.locations.items()):
        if not sections:
            continue
        common: set[str] | None = None
        for sec in sections:
            mechs = {m for m in sec.psection()["density_mechs"] if not m.endswith("_ion")}
            common = mechs if common is None else common & mechs
        for mechanism in sorted(common or ()):
            for variable in _parameter_names(mechanism):
                name = f"{location}.{variable}"
                value = model.defaults.get(name, float(getattr(sections[0](0.5), variable)))
                result.append(DiscoveredParameter(name, mechanism, value))
    return result
