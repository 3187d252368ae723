"""Where an error category becomes an HTTP status or an exit code — and nowhere else.

Packages below the portal raise errors carrying `category: ErrorCategory`; their
messages are safe to show. Anything without a category is unexpected: the user sees a
generic line with a correlation id, the traceback goes to the log.
"""

from __future__ import annotations

import http
import logging
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from hsm_sim.errors import ErrorCategory
from portal.log_redaction import loggable_path, loggable_traceback

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CODE_BY_CATEGORY",
    "EXIT_UNEXPECTED",
    "HTTP_STATUS_BY_CATEGORY",
    "PROBLEM_JSON",
    "InstanceError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "NoHierarchyError",
    "category_of",
    "exit_code_for",
    "http_status_for",
    "new_correlation_id",
    "one_line",
    "problem",
    "problem_response",
    "register_error_handlers",
]

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)

HTTP_STATUS_BY_CATEGORY: dict[ErrorCategory, int] = {
    ErrorCategory.BAD_REQUEST: 400,
    ErrorCategory.UNAUTHORIZED: 401,
    ErrorCategory.FORBIDDEN: 403,
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.CONFLICT: 409,
    ErrorCategory.LOCKED: 423,
    ErrorCategory.UNAVAILABLE: 503,
    ErrorCategory.INTERNAL: 500,
}

# Exit codes of the `yinxin` CLI (documented in README.md). 1 means "the command ran and
# found a problem" (e.g. a broken audit chain); 2 is click's own code for bad usage,
# which bad input shares.
EXIT_CHECK_FAILED = 1
EXIT_CODE_BY_CATEGORY: dict[ErrorCategory, int] = {
    ErrorCategory.BAD_REQUEST: 2,
    ErrorCategory.UNAUTHORIZED: 3,
    ErrorCategory.FORBIDDEN: 4,
    ErrorCategory.NOT_FOUND: 5,
    ErrorCategory.CONFLICT: 6,
    ErrorCategory.LOCKED: 7,
    ErrorCategory.UNAVAILABLE: 8,
    ErrorCategory.INTERNAL: 9,
}
EXIT_UNEXPECTED = 70  # sysexits EX_SOFTWARE: a bug, details in the log


class InstanceError(Exception):
    """The instance directory is not in the state the command needs."""

    category = ErrorCategory.BAD_REQUEST


class InstanceExistsError(InstanceError):
    category = ErrorCategory.CONFLICT


class InstanceNotFoundError(InstanceError):
    category = ErrorCategory.NOT_FOUND


class NoHierarchyError(InstanceError):
    """The instance has no CA hierarchy (no ceremony has run on it)."""

    category = ErrorCategory.NOT_FOUND


def category_of(error: BaseException) -> ErrorCategory | None:
    """The error's category: Yinxin errors carry one, bad input (ValueError) is BAD_REQUEST."""
    category = getattr(error, "category", None)
    if isinstance(category, ErrorCategory):
        return category
    if isinstance(error, ValueError):
        return ErrorCategory.BAD_REQUEST
    return None


def http_status_for(category: ErrorCategory) -> int:
    return HTTP_STATUS_BY_CATEGORY[category]


def exit_code_for(category: ErrorCategory) -> int:
    return EXIT_CODE_BY_CATEGORY[category]


def one_line(error: BaseException) -> str:
    """The error's message on one line (messages are shown as they are)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def problem(
    status: int,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem-details object."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or http.HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return body


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    **extensions: Any,
) -> Response:
    """A Flask response carrying an RFC 9457 problem as application/problem+json."""
    response = jsonify(problem(status, detail, type_=type_, **extensions))
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def _wants_problem(status: int) -> bool:
    """API paths always answer with problems; elsewhere only 404, 405 and 500 do."""
    return request.path.startswith("/api/") or status in (404, 405, 500)


def _handle_http_exception(error: HTTPException) -> Response | HTTPException:
    status = error.code or 500
    if status == 500:
        return _handle_unexpected(error)
    if not _wants_problem(status):
        return error
    response = problem_response(status, error.description)
    if status == 405 and error.get_response().headers.get("Allow"):
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _handle_unexpected(error: BaseException) -> Response:
    """500 without the exception's text; the traceback is logged under a correlation id."""
    correlation_id = new_correlation_id()
    logger.error(
        "unexpected error handling %s %s [correlation id %s]\n%s",
        request.method,
        loggable_path(request.path),
        correlation_id,
        loggable_traceback(error),
    )
    response = problem_response(
        500,
        f"An unexpected error occurred. Quote correlation id {correlation_id} "
        "when reporting it.",
        correlation_id=correlation_id,
    )
    response.headers["X-Correlation-ID"] = correlation_id
    return response


def _handle_exception(error: Exception) -> Response | HTTPException:
    if isinstance(error, HTTPException):
        return _handle_http_exception(error)
    category = getattr(error, "category", None)
    if not isinstance(category, ErrorCategory) or category is ErrorCategory.INTERNAL:
        return _handle_unexpected(error)
    return problem_response(
        http_status_for(category),
        one_line(error),
        type_=f"urn:yinxin:problem:{category.value}",
    )


def register_error_handlers(app: Flask) -> None:
    """Answer Yinxin errors and HTTP errors with problem+json, hide unexpected ones."""
    app.register_error_handler(Exception, _handle_exception)
