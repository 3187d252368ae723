"""The web server's access log without personal data or bearer secrets
(portal/log_redaction.py says why).

`yinxin serve` logs through `RedactingLogger`: request paths without their query
string and with `<code>` for a usage code, the referrer likewise, and none of
gunicorn's request-header or environment atoms (Authorization among them). The log
format is gunicorn's default, which uses none of them either.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from portal.log_redaction import loggable_path

__all__ = ["RedactingLogger"]


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with the access log's atoms redacted."""

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = loggable_path(environ.get("PATH_INFO") or "/")
        atoms["r"] = (
            f"{environ.get('REQUEST_METHOD', '-')} {path} "
            f"{environ.get('SERVER_PROTOCOL', '-')}"
        )
        atoms["U"] = path
        atoms["q"] = "-"
        atoms["f"] = loggable_path(environ.get("HTTP_REFERER", "-"))
        return {
            name: value
            for name, value in atoms.items()
            if not name.endswith(("}i", "}e"))
        }
