"""GET /healthz: can this worker serve — database reachable, key store open."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from hsm_sim.errors import HsmError
from portal.context import current_services
from portal.db import DatabaseUnavailableError
from portal.errors import one_line, problem_response

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)
logger = logging.getLogger(__name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    services = current_services()
    checks = {"database": "ok", "hsm": "ok"}
    try:
        services.check_database()
    except DatabaseUnavailableError as exc:
        checks["database"] = "unavailable"
        logger.warning("health check: %s", one_line(exc))
    try:
        services.keystore().list_keys()
    except HsmError as exc:
        checks["hsm"] = "unavailable"
        logger.warning("health check: key store: %s", one_line(exc))
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        # The reasons go to the log only: this endpoint is reachable by anyone.
        return problem_response(503, f"unavailable: {', '.join(failing)}", **checks)
    return jsonify(status="ok", **checks)
