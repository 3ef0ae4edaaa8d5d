COMMENT
Low-voltage-activated (T-type) calcium current, m^2 h.
ENDCOMMENT
NEURON {
    SUFFIX nlcal
    USEION ca READ eca WRITE ica
    RANGE gbar
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.002 (S/cm2)
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
    minf = 1 / (1 + exp(-(v + 50) / 6))
    mtau = 1 + 6 / (exp((v + 55) / 12) + exp(-(v + 55) / 12))
    hinf = 1 / (1 + exp((v + 76) / 5.5))
    htau = 8 + 40 / (exp((v + 70) / 10) + exp(-(v + 70) / 10))
}
