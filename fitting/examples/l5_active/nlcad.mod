COMMENT
Submembrane calcium: influx through the calcium currents into a shell of depth "depth",
first-order removal toward cainf with time constant "decay".
ENDCOMMENT
NEURON {
    SUFFIX nlcad
    USEION ca READ ica WRITE cai
    RANGE depth, decay, cainf
}
UNITS { (mA) = (milliamp) (mM) = (milli/liter) (um) = (micron) FARADAY = (faraday) (coulomb) }
PARAMETER {
    depth = 1 (um)
    decay = 80 (ms)
    cainf = 0.0001 (mM)
}
ASSIGNED { ica (mA/cm2) }
STATE { cai (mM) }
BREAKPOINT { SOLVE states METHOD cnexp }
INITIAL { cai = cainf }
DERIVATIVE states {
    cai' = -10000 * ica / (2 * FARADAY * depth) - (cai - cainf) / decay
}
