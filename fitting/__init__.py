"""Fit channel parameters of multi-compartment NEURON models to measurements.

Importing this package asks NEURON for no graphical interface (``-nogui`` in
``NEURON_MODULE_OPTIONS``, which NEURON reads when ``neuron`` is first imported, here and in
every worker process, which inherits the environment). Fitting never draws with NEURON, and
without the option every process that imports NEURON on a machine without an X display prints
"Warning: no DISPLAY environment variable. --No graphics will be displayed." Options the user
already put in the variable are kept.
"""

import os

_options = os.environ.get("NEURON_MODULE_OPTIONS", "")
if "-nogui" not in _options.split():
    os.environ["NEURON_MODULE_OPTIONS"] = f"{_options} -nogui".strip()
