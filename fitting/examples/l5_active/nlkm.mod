COMMENT
Slow, non-inactivating (M-type) potassium current for spike-frequency adaptation.
ENDCOMMENT
NEURON {
    SUFFIX nlkm
    USEION k READ ek WRITE ik
    RANGE gbar
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER {
    gbar = 0.0015 (S/cm2)
}
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) winf wtau (ms) }
STATE { w }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar * w * (v - ek)
}
INITIAL { rates(v) w = winf }
DERIVATIVE states {
    rates(v)
    w' = (winf - w) / wtau
}
PROCEDURE rates(v (mV)) {
    winf = 1 / (1 + exp(-(v + 35) / 10))
    wtau = 20 + 120 / (exp((v + 35) / 20) + exp(-(v + 35) / 20))
}
