COMMENT
Calcium-activated (SK-type) potassium current: a Hill function of submembrane calcium,
relaxing with a 4 ms time constant.
ENDCOMMENT
NEURON {
    SUFFIX nlsk
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (mM) = (milli/liter) (S) = (siemens) }
PARAMETER {
    gbar = 0.002 (S/cm2)
    kd = 0.0004 (mM)
    hill = 4
    tau = 4 (ms)
}
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) cai (mM) zinf }
STATE { z }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ik = gbar * z * (v - ek)
}
INITIAL { rates(cai) z = zinf }
DERIVATIVE states {
    rates(cai)
    z' = (zinf - z) / tau
}
PROCEDURE rates(ca (mM)) {
    zinf = 1 / (1 + (kd / (ca + 1e-9)) ^ hill)
}
