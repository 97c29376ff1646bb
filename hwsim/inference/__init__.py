"""One deployment priced: resolve a spec, price prefill and decode, memory, capacity, results.

:func:`~hwsim.inference.estimate.estimate` and :func:`~hwsim.inference.context.context_sweep`
are the entry points; :func:`~hwsim.inference.deployment.make_deployment` resolves a
:class:`~hwsim.profiles.deployment.DeploymentSpec` against a model and a device.
"""
