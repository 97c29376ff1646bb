"""hwsim's measurement suite: time real kernels, fit a profile, report predicted vs measured.

Shipped next to ``hwsim`` but never imported by its core; only ``hwsim calibrate`` and
``hwsim validate`` import it (lazily), and only this package needs torch.

Modules: :mod:`~validation.harness` (device, clocks, timing, input pools),
:mod:`~validation.kernels` (the torch kernels), :mod:`~validation.triton_kernels` (GPU only),
:mod:`~validation.suite` (sweeps), :mod:`~validation.results` (files + metadata),
:mod:`~validation.fit` (efficiency fit, held-out error, error bands),
:mod:`~validation.report` (tables and plots).

What may calibrate hwsim: measurements this suite takes, and published measurements cited by
paper and table. Never measurement databases shipped inside other simulators' packages.
"""
