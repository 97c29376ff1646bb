"""Pricing: ops -> seconds on a device.

:mod:`~hwsim.perf.roofline` (roofline x efficiency, alpha-beta collectives),
:mod:`~hwsim.perf.bands` (calibration residual bands), :mod:`~hwsim.perf.kernels` (the registry
of named kernels), :mod:`~hwsim.perf.measured` (measurement files) and
:mod:`~hwsim.perf.ladder` (measured -> calibrated -> roofline, for one kernel or any op).
"""
