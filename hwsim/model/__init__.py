"""What a model computes: ops as cost descriptors, a forward pass, its layers and parameters.

No time lives here (that is :mod:`hwsim.perf`): an :class:`~hwsim.model.ops.Op` says FLOPs and
bytes. Attention variants and state-space layers are registered mixers in
:mod:`hwsim.model.mixers`; :mod:`hwsim.model.layers` builds them from a profile's specs.
"""
