COMMENT
Transient sodium current, m^3 h, for NeuroLoop's active-dendrite example cell: the classic
Hodgkin-Huxley rate functions, shifted by vshift (negative = toward hyperpolarised potentials).
ENDCOMMENT
NEURON {
    SUFFIX nlna
    USEION na READ ena WRITE ina
    RANGE gbar, vshift
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.12 (S/cm2)
    vshift = -5 (mV)
}
ASSIGNED { v (mV) ena (mV) ina (mA/cm2) minf hinf mtau (ms) htau (ms) }
STATE { m h }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ina = gbar * m * m * m * h * (v - ena)
}
INITIAL { rates(v) m = minf h = hinf }
DERIVATIVE states {
    rates(v)
    m' = (minf - m) / mtau
    h' = (hinf - h) / htau
}
FUNCTION ratio(x (mV), k (mV)) {
    : x / (1 - exp(-x / k)), continuous at x = 0
    if (fabs(x / k) < 1e-6) {
        ratio = k * (1 + x / k / 2)
    } else {
        ratio = x / (1 - exp(-x / k))
    }
}
PROCEDURE rates(v (mV)) { LOCAL u, a, b
    u = v - vshift
    a = 0.1 * ratio(u + 40, 10)
    b = 4 * exp(-(u + 65) / 18)
    mtau = 1 / (a + b)
    minf = a * mtau
    a = 0.07 * exp(-(u + 65) / 20)
    b = 1 / (1 + exp(-(u + 35) / 10))
    htau = 1 / (a + b)
    hinf = a * htau
}
