"""The planning web page and its JSON API (``hwsim serve``; ``pip install 'hwsim[web]'``).

- :mod:`hwsim.web.service`: what each endpoint does, without the web framework (plans,
  estimates, context sweeps, the report, launch artifacts; a small store of recent results).
- :mod:`hwsim.web.app`: the FastAPI application (``create_app``) serving ``static/``.
- ``static/``: the page, one HTML file with plain JavaScript calling the API (no build step).

Importing this package loads neither FastAPI nor the planner.
"""

from __future__ import annotations

WEB_EXTRA_HINT = "pip install 'hwsim[web]'"
REQUIRED = ("fastapi", "uvicorn")


def missing_packages() -> list[str]:
    """The web extra's packages that are not installed."""
    from importlib.util import find_spec

    return [name for name in REQUIRED if find_spec(name) is None]
