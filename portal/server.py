"""`yinxin serve`: the web app under gunicorn, a production WSGI server.

Each worker builds its own app after the fork, and starts a refresh scheduler of which
exactly one, the holder of the instance's refresh lock, re-signs stale CRLs, OCSP
responses and licence status lists every `refresh_interval` seconds
(portal/scheduler.py).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from portal.access_log import RedactingLogger
from portal.app import create_app
from portal.config import Settings
from portal.context import current_services_of
from portal.scheduler import RefreshScheduler

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_THREADS",
    "DEFAULT_WORKERS",
    "serve",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 2
# Threads per worker (gunicorn's gthread worker): they keep client connections alive
# between requests, which OCSP clients and caches rely on for throughput.
DEFAULT_THREADS = 4


class _YinxinServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn configured in code; each worker builds its own app after the fork, so
    database connections and key-store sessions are never shared between processes
    (the threads of one worker share its app, whose parts are thread-safe)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        # gunicorn 24+ opens a control socket in ~/.gunicorn, one path for every server
        # of the user: two instances would fight over it, and nothing here uses it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        app = create_app(settings=self._settings)
        if self._settings.refresh_interval:
            services = current_services_of(app)
            scheduler = RefreshScheduler(
                services.scheduled_refresh,
                interval=self._settings.refresh_interval,
                run_dir=self._settings.run_dir,
            )
            scheduler.start()
            app.extensions["yinxin-refresh"] = scheduler
        return app


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = DEFAULT_THREADS,
) -> None:
    """Serve until stopped (SIGINT/SIGTERM stop gracefully)."""
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "accesslog": "-",
        # No query strings, usage codes or credentials in the access log.
        "logger_class": RedactingLogger,
        "errorlog": "-",
        "proc_name": f"yinxin-{settings.region}",
        "preload_app": False,
    }
    _YinxinServer(settings, options).run()
