COMMENT
Hyperpolarisation-activated cation current (HCN), one gate, reversal -45 mV. Produces the
sag and rebound of the response to a hyperpolarising step.
ENDCOMMENT
NEURON {
    SUFFIX nlih
    NONSPECIFIC_CURRENT i
    RANGE gbar, ehcn
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.0001 (S/cm2)
    ehcn = -45 (mV)
}
ASSIGNED { v (mV) i (mA/cm2) qinf qtau (ms) }
STATE { q }
BREAKPOINT {
    SOLVE states METHOD cnexp
    i = gbar * q * (v - ehcn)
}
INITIAL { rates(v) q = qinf }
DERIVATIVE states {
    rates(v)
    q' = (qinf - q) / qtau
}
PROCEDURE rates(v (mV)) {
    qinf = 1 / (1 + exp((v + 82) / 8))
    qtau = 15 + 120 / (exp((v + 75) / 14) + exp(-(v + 75) / 18))
}
