"""The OpenAPI 3.1 document of /api/v1, written by hand next to the routes it describes.

tests/portal/test_api.py checks that every route of the API blueprint is in it, with
its methods, and that it names no route that does not exist.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi_document"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


_SEAL_ID = {
    "name": "seal_id",
    "in": "path",
    "required": True,
    "description": "The seal's id (sl_...) or its 13-digit seal code.",
    "schema": {"type": "string", "maxLength": 64},
}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "examples": ["urn:yinxin:problem:forbidden"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "limit": {"type": "integer", "description": "For 413: the byte limit."},
        },
    },
    "Seal": {
        "type": "object",
        "required": ["id", "es_id", "name", "type", "agency", "status"],
        "properties": {
            "id": {"type": "string", "examples": ["sl_0f3c5a9e1b2d4c6a"]},
            "es_id": {"type": "string", "description": "Seal code (GB/T 38540 esID)."},
            "name": {"type": "string", "examples": ["某某市市场监督管理局合同专用章"]},
            "type": {
                "type": "string",
                "enum": ["official", "contract", "finance", "invoice", "legal-rep"],
            },
            "type_label": {"type": "string", "examples": ["合同专用章"]},
            "person_name": {"type": ["string", "null"]},
            "agency": {
                "type": "object",
                "properties": {"uscc": {"type": "string"}, "name": {"type": "string"}},
            },
            "status": {
                "type": "string",
                "enum": ["active", "suspended", "revoked", "expired"],
            },
            "status_reason": {"type": "string"},
            "valid_from": {"type": "string", "format": "date-time"},
            "valid_until": {"type": "string", "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
            "size_mm": {"type": "array", "items": {"type": "number"}},
            "certificate": {
                "type": "object",
                "properties": {
                    "serial": {"type": "string"},
                    "issuer": {"type": "string"},
                },
            },
            "suspended_at": {"type": ["string", "null"], "format": "date-time"},
            "suspension_note": {"type": ["string", "null"]},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "revocation_reason": {"type": ["string", "null"]},
            "granted_to_client": {
                "type": "boolean",
                "description": "Whether the calling client holds a grant to stamp with it.",
            },
        },
    },
    "Placement": {
        "oneOf": [
            {
                "type": "object",
                "title": "At a position",
                "required": ["page", "x_mm", "y_mm"],
                "additionalProperties": False,
                "properties": {
                    "page": {"type": "integer", "minimum": 1},
                    "x_mm": {
                        "type": "number",
                        "minimum": 0,
                        "description": "The seal centre, mm from the page's left edge.",
                    },
                    "y_mm": {
                        "type": "number",
                        "minimum": 0,
                        "description": "The seal centre, mm from the page's top edge.",
                    },
                },
            },
            {
                "type": "object",
                "title": "On a keyword",
                "required": ["keyword"],
                "additionalProperties": False,
                "properties": {
                    "keyword": {"type": "string", "maxLength": 100},
                    "occurrence": {
                        "oneOf": [
                            {"type": "string", "enum": ["first", "last", "all"]},
                            {"type": "integer", "minimum": 1},
                        ],
                        "default": "first",
                    },
                },
            },
        ]
    },
    "StampForm": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "contentMediaType": "application/pdf",
                "description": "The PDF to stamp.",
            },
            "placement": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "JSON: one Placement or a list of up to 50; the first is "
                "the signature's visible seal. None and no seam: an invisible seal.",
                "examples": [
                    '{"page": 1, "x_mm": 150, "y_mm": 240}',
                    '[{"keyword": "盖章处", "occurrence": "last"}]',
                ],
            },
            "seam": {
                "type": "string",
                "enum": ["false", "true", "right", "left"],
                "default": "false",
                "description": "A seam seal (骑缝章) across every page's right "
                "(true, right) or left edge.",
            },
            "seam_pages": {
                "type": "integer",
                "minimum": 2,
                "maximum": 200,
                "default": 20,
                "description": "Pages per seal image of the seam seal.",
            },
            "level": {
                "type": "string",
                "enum": ["B-B", "B-T", "B-LT", "B-LTA"],
                "default": "B-LT",
            },
            "certify": {
                "type": "string",
                "enum": ["false", "true"],
                "default": "false",
                "description": "A certification seal: no changes allowed after it.",
            },
        },
    },
    "VerifyForm": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "contentMediaType": "application/pdf"},
            "trust": {
                "type": "array",
                "maxItems": 8,
                "items": {
                    "type": "string",
                    "contentMediaType": "application/pkix-cert",
                },
                "description": "More root certificates to trust (PEM or DER), on top "
                "of this node's root CA.",
            },
        },
    },
    "Verification": {
        "type": "object",
        "description": "The report of seal.verify: the bottom line, and one entry per "
        "signature (seal data, signer, signing time, timestamp, integrity, coverage, "
        "modifications, chain, revocation).",
        "required": ["valid", "reason", "usable", "signatures", "exit_code"],
        "properties": {
            "valid": {"type": "boolean"},
            "reason": {"type": "string"},
            "usable": {
                "type": "boolean",
                "description": "False: the input is not a readable, signed PDF.",
            },
            "exit_code": {
                "type": "integer",
                "enum": [0, 1, 2],
                "description": "0 valid, 1 invalid, 2 unusable (as yinxin verify pdf).",
            },
            "sha256": {"type": "string"},
            "size": {"type": "integer"},
            "verified_at": {"type": "string", "format": "date-time"},
            "signatures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field_name", "kind", "valid", "reason"],
                    "properties": {
                        "field_name": {"type": "string"},
                        "kind": {
                            "type": "string",
                            "enum": ["approval", "certification", "document-timestamp"],
                        },
                        "is_seal": {"type": "boolean"},
                        "seal": {"type": ["object", "null"]},
                        "signer": {"type": ["object", "null"]},
                        "signing_time": {"type": ["string", "null"]},
                        "timestamp": {"type": ["object", "null"]},
                        "intact": {"type": "boolean"},
                        "crypto_valid": {"type": "boolean"},
                        "coverage": {"type": "string"},
                        "modifications": {"type": ["object", "null"]},
                        "chain": {"type": ["object", "null"]},
                        "revocation": {"type": ["object", "null"]},
                        "valid": {"type": "boolean"},
                        "reason": {"type": "string"},
                    },
                },
            },
        },
    },
}

_RESPONSES = {
    "BadRequest": _problem_response("The request cannot be used as sent."),
    "Unauthorized": {
        **_problem_response(
            "No or wrong client credentials (the answer never says which part). "
            "Carries WWW-Authenticate."
        ),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "Forbidden": _problem_response(
        "Another agency's seal; or for stamping: no grant, or the seal is not active "
        "(type urn:yinxin:problem:seal-not-usable)."
    ),
    "NotFound": _problem_response("No seal with this id or seal code."),
    "TooLarge": _problem_response("The upload is over the limit (50 MiB by default)."),
    "TooManyRequests": {
        **_problem_response("Too many failed authentications or verifications."),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}

_AUTH_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "429": {"$ref": "#/components/responses/TooManyRequests"},
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Yinxin (印信) API",
        "version": "1",
        "description": "An agency's official electronic seals: list them, stamp PDFs "
        "(PAdES, GB/T 38540 seal data), and verify sealed PDFs. Errors are RFC 9457 "
        "problem+json. Authentication: HTTP Basic with the API client's id as user "
        "name and its secret as password (`yinxin client add`); verification and this "
        "document are public.",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"clientSecret": []}],
    "paths": {
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document."}},
            }
        },
        "/seals": {
            "get": {
                "operationId": "listSeals",
                "summary": "The calling client's agency's seals, oldest first.",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "enum": ["active", "suspended", "revoked", "expired"],
                        },
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The seals.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "seals": {
                                            "type": "array",
                                            "items": {
                                                "$ref": "#/components/schemas/Seal"
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_AUTH_ERRORS,
                },
            }
        },
        "/seals/{seal_id}": {
            "get": {
                "operationId": "getSeal",
                "summary": "One of the agency's seals.",
                "parameters": [_SEAL_ID],
                "responses": {
                    "200": {
                        "description": "The seal.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Seal"}
                            }
                        },
                    },
                    **_AUTH_ERRORS,
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            }
        },
        "/seals/{seal_id}/stamp": {
            "post": {
                "operationId": "stampPdf",
                "summary": "Stamp a PDF with the seal; the answer is the sealed PDF.",
                "description": "The client must belong to the seal's agency, hold a "
                "grant for the seal, and the seal must be active. Each stamp is "
                "logged (document SHA-256, seal, client) before it is signed.",
                "parameters": [_SEAL_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {"$ref": "#/components/schemas/StampForm"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The sealed PDF (as an attachment).",
                        "content": {
                            "application/pdf": {
                                "schema": {
                                    "type": "string",
                                    "contentMediaType": "application/pdf",
                                }
                            }
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_AUTH_ERRORS,
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "409": _problem_response(
                        "The document is certified with no changes allowed."
                    ),
                    "413": {"$ref": "#/components/responses/TooLarge"},
                    "503": _problem_response(
                        "The HSM, timestamp authority or revocation data is unavailable."
                    ),
                },
            }
        },
        "/verify/pdf": {
            "post": {
                "operationId": "verifyPdf",
                "summary": "Verify every seal in a PDF.",
                "description": "Public. The answer is always the report (200): "
                "`valid` false for an invalid document, `usable` false for input "
                "that is no signed PDF. Rate-limited per address (429).",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {"$ref": "#/components/schemas/VerifyForm"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The verification report.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Verification"}
                            }
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "413": {"$ref": "#/components/responses/TooLarge"},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "clientSecret": {
                "type": "http",
                "scheme": "basic",
                "description": "User name: the API client id (cl_...); password: its "
                "secret. 401 with WWW-Authenticate when missing or wrong; too many "
                "failures from one address: 429 with Retry-After.",
            }
        },
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
    },
}


def openapi_document() -> dict[str, Any]:
    """The document (a copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
