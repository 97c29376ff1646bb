"""``hwsim serve``: the planning web page and its JSON API on a local address."""

from __future__ import annotations

import socket

import typer

from hwsim.cli.common import err_console, fail, handle_errors, settings


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message, not a server traceback, when the address cannot be used."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        fail(f"--host {host}: cannot resolve it ({exc.strerror})")
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port")


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def serve(
        host: str = typer.Option(
            "127.0.0.1", help="address to listen on (0.0.0.0: every interface, no login!)"
        ),
        port: int = typer.Option(8000, help="TCP port", min=1, max=65535),
        workers: int = typer.Option(
            1, help="local worker processes for each plan's candidate search", min=1
        ),
    ) -> None:
        """Start the planning web page (pick model, hardware and traffic; see the plan, its
        plots and context costs; download the report and launch artifacts) and its JSON API
        (/api/plan, /api/estimate, /api/context, /api/artifacts). Needs the web extra:
        pip install 'hwsim\\[web]'."""
        from hwsim.web import WEB_EXTRA_HINT, missing_packages

        if missing := missing_packages():
            fail(f"hwsim serve needs {' and '.join(missing)}: {WEB_EXTRA_HINT}")
        _check_port(host, port)
        import uvicorn

        from hwsim.web.app import LOOPBACK_HOSTS, create_app
        from hwsim.web.service import Service

        loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
        hosts = sorted({*LOOPBACK_HOSTS, host}) if loopback else None  # None: any Host header
        web = create_app(Service(workers=workers), allowed_hosts=hosts)
        shown = f"[{host}]" if ":" in host else host
        err_console.print(
            f"hwsim planning page: http://{shown}:{port}/  (Ctrl-C stops)",
            markup=False,
            highlight=False,
        )
        uvicorn.run(web, host=host, port=port, log_level="warning" if settings.quiet else "info")
