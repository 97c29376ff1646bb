"""hwsim's measurement suite: time real kernels, fit a profile, report predicted vs measured.

Shipped next to ``hwsim`` but never imported by its core; only ``hwsim calibrate`` and
``hwsim validate`` import it (lazily), and only this package needs torch.

Modules: :mod:`~validation.harness` (device, clocks, timing, input pools),
:mod:`~validation.kernels` (the torch kernels), :mod:`~validation.triton_kernels` (GPU only),
:mod:`~validation.suite` (sweeps), :mod:`~validation.results` (files + metadata),
:mod:`~validation.curve` (one op class's efficiency curve, split, cross-validation),
:mod:`~validation.bands` (error bands from out-of-fold residuals),
:mod:`~validation.fit` (a whole profile: peaks, curves, bands, held-out error),
:mod:`~validation.profile_writer` (the calibrated YAML and its report),
:mod:`~validation.report` (tables and plots), :mod:`~validation.device_run` and
:mod:`~validation.end_to_end` (a lent GPU: the sweep in priority order; a whole decoder).

What may calibrate hwsim: measurements this suite takes, and published measurements cited by
paper and table. Never measurement databases shipped inside other simulators' packages.
"""
