: A plain leak conductance written for NeuroLoop's hoc-model fitting test.
: i = g * (v - e); g in S/cm2, e in mV.

NEURON {
    SUFFIX nlleak
    NONSPECIFIC_CURRENT i
    RANGE g, e
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
}

PARAMETER {
    g = 0.0001 (S/cm2)
    e = -70 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
}

BREAKPOINT {
    i = g * (v - e)
}
