"""The bundled five-compartment reference model (soma, axon hillock, three dendrites).

Written for NeuroLoop from scratch, after the layout the source paper describes: a soma and an
axon hillock with Hodgkin–Huxley channels (NEURON's built-in ``hh`` mechanism: ``gnabar_hh``,
``gkbar_hh``, ``gl_hh``, ``el_hh``) and a chain of three passive dendrite segments (built-in
``pas``: ``g_pas``, ``e_pas``). The cell is large (70 µm soma, 500 µm dendrites of 12, 10 and
8 µm) so that the paper's −5 nA hyperpolarising step gives a physiological ~40 mV deflection,
and it fires repetitively for depolarising steps of a few nA.

Section lists: ``soma``, ``hillock``, ``dend`` (all three dendrites), ``somatic`` (soma and
hillock) and ``all``; each single dendrite is also addressable as ``dend1``, ``dend2``, ``dend3``.
"""

from __future__ import annotations

from typing import Any

SOMA_DIAM_UM = 70.0
HILLOCK_LENGTH_UM = 20.0
HILLOCK_DIAM_UM = 10.0
HILLOCK_GNABAR_S_PER_CM2 = 0.36
DEND_LENGTH_UM = 500.0
DEND_DIAMS_UM = (12.0, 10.0, 8.0)
DEND_G_PAS_S_PER_CM2 = 1e-4
E_PAS_MV = -65.0
RA_OHM_CM = 100.0
CM_UF_PER_CM2 = 1.0

#: Ground-truth values of the default fitted parameters (for synthetic targets and tests).
TRUE_PARAMETERS: dict[str, float] = {
    "soma.gnabar_hh": 0.12,
    "soma.gkbar_hh": 0.036,
    "soma.gl_hh": 0.0003,
    "hillock.gnabar_hh": HILLOCK_GNABAR_S_PER_CM2,
    "dend.g_pas": DEND_G_PAS_S_PER_CM2,
}


class ReferenceCell:
    """The five-compartment cell; build one per process (NEURON state is per process).

    Attributes:
        section_lists: Location name → sections, used for parameter addressing and stimulation.
    """

    def __init__(self) -> None:
        from neuron import h

        self.soma: Any = h.Section(name="soma")
        self.soma.L = self.soma.diam = SOMA_DIAM_UM
        self.soma.insert("hh")

        self.hillock: Any = h.Section(name="hillock")
        self.hillock.L = HILLOCK_LENGTH_UM
        self.hillock.diam = HILLOCK_DIAM_UM
        self.hillock.insert("hh")
        self.hillock.gnabar_hh = HILLOCK_GNABAR_S_PER_CM2
        self.hillock.connect(self.soma(1.0))

        self.dends: list[Any] = []
        parent = self.soma(0.0)
        for index, diam_um in enumerate(DEND_DIAMS_UM, start=1):
            dend = h.Section(name=f"dend{index}")
            dend.L = DEND_LENGTH_UM
            dend.diam = diam_um
            dend.insert("pas")
            dend.g_pas = DEND_G_PAS_S_PER_CM2
            dend.e_pas = E_PAS_MV
            dend.connect(parent)
            parent = dend(1.0)
            self.dends.append(dend)

        every = [self.soma, self.hillock, *self.dends]
        for sec in every:
            sec.Ra = RA_OHM_CM
            sec.cm = CM_UF_PER_CM2

        self.section_lists: dict[str, list[Any]] = {
            "soma": [self.soma],
            "hillock": [self.hillock],
            "dend": list(self.dends),
            "somatic": [self.soma, self.hillock],
            "all": every,
        }
        for index, dend in enumerate(self.dends, start=1):
            self.section_lists[f"dend{index}"] = [dend]


def build_reference_cell() -> ReferenceCell:
    """Build the reference cell (a ``module:function`` builder like any user model)."""
    return ReferenceCell()
