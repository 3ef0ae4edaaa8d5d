COMMENT
Delayed-rectifier potassium current, n^4, for NeuroLoop's active-dendrite example cell: the
classic Hodgkin-Huxley rate functions, shifted by vshift.
ENDCOMMENT
NEURON {
    SUFFIX nlkdr
    USEION k READ ek WRITE ik
    RANGE gbar, vshift
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.036 (S/cm2)
    vshift = -5 (mV)
}
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) ninf ntau (ms) }
STATE { n }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar * n * n * n * n * (v - ek)
}
INITIAL { rates(v) n = ninf }
DERIVATIVE states {
    rates(v)
    n' = (ninf - n) / ntau
}
FUNCTION ratio(x (mV), k (mV)) {
    if (fabs(x / k) < 1e-6) {
        ratio = k * (1 + x / k / 2)
    } else {
        ratio = x / (1 - exp(-x / k))
    }
}
PROCEDURE rates(v (mV)) { LOCAL u, a, b
    u = v - vshift
    a = 0.01 * ratio(u + 55, 10)
    b = 0.125 * exp(-(u + 65) / 80)
    ntau = 1 / (a + b)
    ninf = a * ntau
}
