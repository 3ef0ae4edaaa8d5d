COMMENT
High-voltage-activated calcium current, m^2 h, with slow inactivation.
ENDCOMMENT
NEURON {
    SUFFIX nlcah
    USEION ca READ eca WRITE ica
    RANGE gbar
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.0005 (S/cm2)
}
ASSIGNED { v (mV) eca (mV) ica (mA/cm2) minf hinf mtau (ms) htau (ms) }
STATE { m h }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ica = gbar * m * m * h * (v - eca)
}
INITIAL { rates(v) m = minf h = hinf }
DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
}
PROCEDURE rates(v (mV)) {
    minf = 1 / (1 + exp(-(v + 22) / 6))
    mtau = 0.4 + 1.5 / (exp((v + 25) / 15) + exp(-(v + 25) / 15))
    hinf = 1 / (1 + exp((v + 38) / 9))
    htau = 60
}
