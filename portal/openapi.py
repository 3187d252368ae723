"""The OpenAPI 3.1 document of /api/v1 (seals: portal/api.py; licences:
portal/api_licences.py), written by hand next to the routes it describes.

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

_CLIENT_MARKER = {
    "name": "X-Yinxin-Client",
    "in": "header",
    "required": True,
    "description": "Any value (`1`). A request that changes something must carry a "
    "JSON body or this header, which no other web site can make a browser send; "
    "without either it is 415.",
    "schema": {"type": "string", "examples": ["1"]},
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
        "description": "Seals are checked against this node's own root CAs only; a "
        "`trust` part is refused (400). To verify against other roots, use `yinxin "
        "verify pdf --trust ROOT` on your own machine.",
        "properties": {
            "file": {"type": "string", "contentMediaType": "application/pdf"},
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
            'Carries `WWW-Authenticate: Bearer realm="yinxin-api"`, never a Basic '
            "challenge (a browser would ask for credentials and keep them)."
        ),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "Forbidden": _problem_response(
        "For stamping: no seal:stamp scope, no grant, or the seal is not active "
        "(type urn:yinxin:problem:seal-not-usable)."
    ),
    "NotFound": _problem_response(
        "The client's agency has no seal with this id or seal code. Another agency's "
        "seal gets this same answer."
    ),
    "NotAClientRequest": _problem_response(
        "A request that changes something came without a JSON body and without the "
        "X-Yinxin-Client header: one a browser could send from another site "
        "(type urn:yinxin:problem:not-a-client-request)."
    ),
    "TooLarge": _problem_response("The upload is over the limit (50 MiB by default)."),
    "TooManyRequests": {
        **_problem_response(
            "Too many failed authentications for this client id from this address, "
            "or too many verifications or usage-code fetches from this address."
        ),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}

_AUTH_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "429": {"$ref": "#/components/responses/TooManyRequests"},
}

# Every authenticated request that changes something (portal/api_auth.py).
_CHANGE_ERRORS = {
    **_AUTH_ERRORS,
    "415": {"$ref": "#/components/responses/NotAClientRequest"},
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Yinxin (印信) API",
        "version": "1",
        "description": "An agency's official electronic seals and electronic licences: "
        "list seals, stamp PDFs (PAdES, GB/T 38540 seal data) and verify sealed PDFs; "
        "issue licences (sealed PDF, LC1 QR token, SD-JWT VC), change their status, "
        "make usage codes, and verify licences. Errors are RFC 9457 problem+json. "
        "Authentication: the API client's id and secret (`yinxin client add`), as "
        "HTTP Basic (id as user name, secret as password: `curl -u ID:SECRET`) or as "
        "`Authorization: Bearer ID:SECRET`; verification, fetching by usage code and "
        "this document are public. Every authenticated request that changes "
        "something (every POST) must carry a JSON body (Content-Type: "
        "application/json) or the header `X-Yinxin-Client: 1` (multipart uploads), "
        "else 415: a browser cannot send either from another site without a CORS "
        "preflight, which the node never grants. Status lists are served outside "
        "this API, at /status/<list>.",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"clientSecret": []}, {"clientBearer": []}],
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
                "logged (document SHA-256, seal, client) before it is signed. The "
                "multipart request must carry the X-Yinxin-Client header.",
                "parameters": [_SEAL_ID, _CLIENT_MARKER],
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
                    **_CHANGE_ERRORS,
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
                "that is no signed PDF. Seals are checked against this node's root "
                "CAs only (a `trust` part is 400). Rate-limited per address (429).",
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
                "secret, sent with every request (the node never asks for them with "
                "a Basic challenge). 401 with `WWW-Authenticate: Bearer` when missing "
                "or wrong; too many failures for one client id from one address: 429 "
                "with Retry-After for that pair only. What a client may do "
                "is set by its scopes (yinxin client scopes): seal:stamp, "
                "licence:issue (issue, renew), licence:read (list, fetch), "
                "licence:manage (revoke, suspend, reinstate), licence:usage-code; "
                "403 without the one a route needs.",
            },
            "clientBearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "<client id>:<client secret>",
                "description": "The same credentials as `Authorization: Bearer "
                "cl_...:ycs_...`.",
            },
        },
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
    },
}


# -- licences ---------------------------------------------------------------------------

_IDENTIFIER = {
    "name": "identifier",
    "in": "path",
    "required": True,
    "description": "The GB/T 36904 e-licence identifier (1.2.156.3005.2.<type code>."
    "<agency code>.<number>.<version>.<check>); the agency code must be the "
    "client's own agency's.",
    "schema": {"type": "string", "maxLength": 128},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_LICENCE_SCHEMAS: dict[str, Any] = {
    "HolderJwk": {
        "type": "object",
        "description": "The holder's EC P-256 public key (RFC 7517); the SD-JWT is "
        "bound to it (cnf.jwk). A JWK with a private part (d) is refused.",
        "required": ["kty", "crv", "x", "y"],
        "properties": {
            "kty": {"const": "EC"},
            "crv": {"const": "P-256"},
            "x": {"type": "string"},
            "y": {"type": "string"},
        },
    },
    "IssueLicence": {
        "type": "object",
        "required": ["type", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {
                "type": "string",
                "description": "The licence type's code (yinxin license types).",
                "examples": ["11100000YXML00000Q001"],
            },
            "agency": {
                "type": "string",
                "description": "The issuing agency's USCC: the client's own (403 "
                "otherwise); the default.",
            },
            "data": {
                "type": "object",
                "description": "The licence's fields by name, as in "
                "docs/examples/licences/<type code>.json.",
            },
            "valid_until": {"type": "string", "format": "date"},
            "long_term": {"type": "boolean", "default": False},
            "holder_jwk": _ref("HolderJwk"),
            "seal": {
                "type": "string",
                "description": "The official seal to stamp with (id or seal code); "
                "the client needs a grant for it. Default: the newest active official "
                "seal the client holds a grant for.",
            },
        },
    },
    "RenewLicence": {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "data": {"type": "object"},
            "valid_until": {"type": "string", "format": "date"},
            "long_term": {"type": "boolean", "default": False},
            "holder_jwk": _ref("HolderJwk"),
            "seal": {"type": "string"},
        },
    },
    "Licence": {
        "type": "object",
        "required": ["identifier", "type_code", "agency", "status", "links"],
        "properties": {
            "identifier": {"type": "string"},
            "type_code": {"type": "string"},
            "type_name": {"type": "string", "examples": ["营业执照"]},
            "agency": {
                "type": "object",
                "properties": {"uscc": {"type": "string"}, "name": {"type": "string"}},
            },
            "number": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "previous": {"type": ["string", "null"]},
            "successor": {"type": ["string", "null"]},
            "holder_name": {"type": "string"},
            "data": {"type": "object"},
            "issued_at": {"type": "string", "format": "date-time"},
            "valid_until": {
                "type": "string",
                "description": "YYYY-MM-DD, or long-term.",
            },
            "status": {
                "type": "string",
                "enum": ["valid", "suspended", "revoked", "superseded", "expired"],
            },
            "status_changed_at": {"type": "string", "format": "date-time"},
            "status_note": {"type": ["string", "null"]},
            "holder_bound": {
                "type": "boolean",
                "description": "The SD-JWT credential is bound to a holder key: "
                "presentations need a key-binding JWT made with it.",
            },
            "status_list": {
                "type": "object",
                "properties": {"uri": {"type": "string"}, "idx": {"type": "integer"}},
            },
            "seal_id": {"type": ["string", "null"]},
            "token_expires_at": {"type": ["string", "null"], "format": "date-time"},
            "qr_version": {"type": ["integer", "null"]},
            "created_by": {"type": "string"},
            "links": {
                "type": "object",
                "properties": {
                    "self": {"type": "string"},
                    "pdf": {"type": "string"},
                    "status_list": {"type": "string"},
                },
            },
            "warning": {
                "type": "string",
                "description": "After a status change: it stands, but the status list "
                "could not be signed now (it will be at the next refresh).",
            },
        },
    },
    "IssuedLicence": {
        "allOf": [
            _ref("Licence"),
            {
                "type": "object",
                "required": ["token", "sd_jwt"],
                "properties": {
                    "token": {
                        "type": "string",
                        "description": "The LC1 QR token printed on the PDF.",
                    },
                    "sd_jwt": {
                        "type": "string",
                        "description": "The SD-JWT VC in issuance form, for the "
                        "holder's wallet.",
                    },
                    "qr_version": {"type": "integer"},
                },
            },
        ]
    },
    "StatusChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": "string",
                "maxLength": 200,
                "description": "Required to revoke; optional to suspend; none to "
                "reinstate.",
            }
        },
    },
    "LicenceSearch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "holder": {
                "type": "string",
                "maxLength": 200,
                "description": "In the holder's name, or the holder's code.",
            },
            "type": {"type": "string", "maxLength": 32},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
    },
    "UsageCodeRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ttl": {
                "oneOf": [
                    {"type": "string", "pattern": "^[1-9][0-9]*[smhd]$"},
                    {"type": "integer", "minimum": 60},
                ],
                "default": "10m",
                "description": "How long the code lasts: 30s, 10m, 2h, 1d or seconds "
                "(1 minute to 7 days).",
            },
            "uses": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
            "purpose": {"type": "string", "maxLength": 200},
        },
    },
    "UsageCode": {
        "type": "object",
        "required": ["code", "expires_at", "fetch"],
        "properties": {
            "identifier": {"type": "string"},
            "code": {"type": "string", "examples": ["7K3QM-X2P9A"]},
            "expires_at": {"type": "string", "format": "date-time"},
            "uses": {"type": "integer"},
            "fetch": {
                "type": "string",
                "description": "Where a verifier fetches the sealed PDF with the code.",
            },
        },
    },
    "VerifyLicenceJson": {
        "type": "object",
        "additionalProperties": False,
        "description": "Exactly one of token and sd_jwt. With nonce and aud (sd_jwt "
        "only) the presentation must carry key binding to them.",
        "properties": {
            "token": {"type": "string", "description": "An LC1:... QR token."},
            "sd_jwt": {"type": "string", "description": "An SD-JWT presentation."},
            "nonce": {"type": "string"},
            "aud": {"type": "string"},
        },
    },
    "VerifyLicenceForm": {
        "type": "object",
        "description": "Exactly one of qr_image and pdf.",
        "properties": {
            "qr_image": {
                "type": "string",
                "contentMediaType": "image/*",
                "description": "A photo or scan of the QR code.",
            },
            "pdf": {"type": "string", "contentMediaType": "application/pdf"},
        },
    },
    "LicenceVerification": {
        "type": "object",
        "required": ["verdict", "reason", "fields", "input"],
        "properties": {
            "verdict": {
                "type": "string",
                "enum": [
                    "VALID",
                    "INVALID_SIGNATURE",
                    "UNTRUSTED_ISSUER",
                    "EXPIRED",
                    "NOT_YET_VALID",
                    "REVOKED",
                    "SUSPENDED",
                    "MALFORMED",
                ],
            },
            "reason": {"type": "string"},
            "fields": {
                "type": "object",
                "description": "What the signature covers and was shown: the QR "
                "fields, or the disclosed fields of a presentation.",
            },
            "input": {"type": "string", "enum": ["qr-image", "token", "sd-jwt", "pdf"]},
            "licence_id": {"type": ["string", "null"]},
            "type_code": {"type": ["string", "null"]},
            "issuer": {"type": ["string", "null"]},
            "issued_at": {"type": ["string", "null"], "format": "date-time"},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "signer": {"type": ["string", "null"]},
            "status": {
                "type": ["object", "null"],
                "description": "The status-list check: checked, status, uri, idx, "
                "as_of, source, reason.",
            },
            "seal": {"type": ["object", "null"], "description": "PDF input: its seal."},
            "key_bound": {"type": ["boolean", "null"]},
            "disclosed": {"type": "array", "items": {"type": "string"}},
        },
    },
}

_LICENCE_ERRORS = {
    **_AUTH_ERRORS,
    "400": _problem_response("Not a licence identifier, or a bad request body."),
    "403": _problem_response(
        "Another agency's licence, or the client lacks the route's scope."
    ),
    "404": _problem_response("No licence with this identifier (of the own agency)."),
}

_LICENCE = {
    "description": "The licence.",
    "content": _json(_ref("Licence")),
}

_ISSUED = {
    "description": "Issued: the licence with its LC1 token and SD-JWT; Location "
    "names it.",
    "headers": {"Location": {"schema": {"type": "string"}}},
    "content": _json(_ref("IssuedLicence")),
}

_PDF = {
    "description": "The sealed licence PDF (as an attachment).",
    "content": {
        "application/pdf": {
            "schema": {"type": "string", "contentMediaType": "application/pdf"}
        }
    },
}


def _status_change(verb: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{verb}Licence",
            "summary": summary,
            "parameters": [_IDENTIFIER],
            "requestBody": {
                "required": True,
                "description": "A JSON object (`{}` when there is nothing to say), or "
                "no body with the X-Yinxin-Client header.",
                "content": _json(_ref("StatusChange")),
            },
            "responses": {
                "200": _LICENCE,
                **_LICENCE_ERRORS,
                **_CHANGE_ERRORS,
                "409": _problem_response("The licence's state does not allow it."),
            },
        }
    }


_LICENCE_PATHS: dict[str, Any] = {
    "/licenses": {
        "post": {
            "operationId": "issueLicence",
            "summary": "Issue a licence of the client's agency.",
            "description": "The PDF is stamped with the agency's official seal (公章): "
            "the client needs a grant for it. Data that does not fit the type is 400 "
            "with every problem in `problems`.",
            "requestBody": {
                "required": True,
                "content": _json(_ref("IssueLicence")),
            },
            "responses": {
                "201": _ISSUED,
                "400": _problem_response(
                    "The body, or the data (every problem in `problems`)."
                ),
                **_AUTH_ERRORS,
                "403": _problem_response(
                    "No licence:issue scope, another agency, or no grant for an "
                    "official seal."
                ),
                "404": {"$ref": "#/components/responses/NotFound"},
                "409": _problem_response(
                    "No active official seal, or this number was issued already."
                ),
                "415": {"$ref": "#/components/responses/NotAClientRequest"},
                "413": {"$ref": "#/components/responses/TooLarge"},
                "503": _problem_response(
                    "The HSM, document signer or timestamp authority is unavailable."
                ),
            },
        },
        "get": {
            "operationId": "listLicences",
            "summary": "The client's agency's licences, newest first.",
            "parameters": [
                {
                    "name": "holder",
                    "in": "query",
                    "required": False,
                    "description": "In the holder's name, or the holder's code. "
                    "Personal data: prefer POST /licenses/search, which keeps it out "
                    "of URLs (the node's own access log never shows query strings).",
                    "schema": {"type": "string", "maxLength": 200},
                },
                {
                    "name": "type",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 1000,
                        "default": 100,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "The licences.",
                    "content": _json(
                        {
                            "type": "object",
                            "properties": {
                                "licences": {"type": "array", "items": _ref("Licence")}
                            },
                        }
                    ),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                **_AUTH_ERRORS,
            },
        },
    },
    "/licenses/search": {
        "post": {
            "operationId": "searchLicences",
            "summary": "As GET /licenses, with the filters in a JSON body (a "
            "holder's name or ID number stays out of URLs and logs).",
            "requestBody": {
                "required": True,
                "content": _json(_ref("LicenceSearch")),
            },
            "responses": {
                "200": {
                    "description": "The licences, newest first.",
                    "content": _json(
                        {
                            "type": "object",
                            "properties": {
                                "licences": {"type": "array", "items": _ref("Licence")}
                            },
                        }
                    ),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                **_CHANGE_ERRORS,
            },
        }
    },
    "/licenses/{identifier}": {
        "get": {
            "operationId": "getLicence",
            "summary": "One of the agency's licences.",
            "parameters": [_IDENTIFIER],
            "responses": {"200": _LICENCE, **_LICENCE_ERRORS},
        }
    },
    "/licenses/{identifier}/pdf": {
        "get": {
            "operationId": "getLicencePdf",
            "summary": "The licence's sealed PDF as issued.",
            "parameters": [_IDENTIFIER],
            "responses": {"200": _PDF, **_LICENCE_ERRORS},
        }
    },
    "/licenses/{identifier}/renew": {
        "post": {
            "operationId": "renewLicence",
            "summary": "Change or renew: the next version, linked to this one, "
            "which becomes superseded.",
            "parameters": [_IDENTIFIER],
            "requestBody": {"required": True, "content": _json(_ref("RenewLicence"))},
            "responses": {
                "201": _ISSUED,
                **_LICENCE_ERRORS,
                **_CHANGE_ERRORS,
                "409": _problem_response(
                    "Not valid, already replaced, or another holder or number."
                ),
                "503": _problem_response("The HSM or document signer is unavailable."),
            },
        }
    },
    "/licenses/{identifier}/revoke": _status_change(
        "revoke", "Revoke for good (a reason is required)."
    ),
    "/licenses/{identifier}/suspend": _status_change(
        "suspend", "Suspend until reinstated."
    ),
    "/licenses/{identifier}/reinstate": _status_change(
        "reinstate", "Lift a suspension."
    ),
    "/licenses/{identifier}/usage-codes": {
        "post": {
            "operationId": "createUsageCode",
            "summary": "A usage code (用证码) for a valid licence: with it a verifier "
            "fetches the sealed PDF.",
            "parameters": [_IDENTIFIER],
            "requestBody": {
                "required": True,
                "description": "A JSON object (`{}` for the defaults), or no body "
                "with the X-Yinxin-Client header.",
                "content": _json(_ref("UsageCodeRequest")),
            },
            "responses": {
                "201": {
                    "description": "The code, shown this once.",
                    "content": _json(_ref("UsageCode")),
                },
                **_LICENCE_ERRORS,
                **_CHANGE_ERRORS,
                "409": _problem_response("The licence is not valid."),
            },
        }
    },
    "/licenses/by-code/{code}": {
        "get": {
            "operationId": "fetchByUsageCode",
            "summary": "The sealed PDF a usage code gives access to.",
            "description": "Public: the code is the holder's consent. Every fetch is "
            "logged with the requester's address. An unknown, expired or used-up "
            "code, or a licence no longer valid, is the same 404. Rate-limited per "
            "address (429). The node's access log shows the path with `<code>` in "
            "place of the code.",
            "security": [],
            "parameters": [
                {
                    "name": "code",
                    "in": "path",
                    "required": True,
                    "description": "The code, XXXXX-XXXXX (case and hyphens do not "
                    "matter).",
                    "schema": {"type": "string", "maxLength": 64},
                }
            ],
            "responses": {
                "200": _PDF,
                "404": _problem_response(
                    "No licence available for this code (unknown, expired, used up "
                    "or no longer valid: the answer does not say which)."
                ),
                "429": {"$ref": "#/components/responses/TooManyRequests"},
            },
        }
    },
    "/verify/licence": {
        "post": {
            "operationId": "verifyLicence",
            "summary": "Verify a licence: QR image, PDF, LC1 token or SD-JWT "
            "presentation.",
            "description": "Public. A processed request is always 200 with the verdict "
            "(VALID, REVOKED, MALFORMED...). Status from this node's lists; nothing "
            "named in the input is fetched. Rate-limited per address (429).",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("VerifyLicenceJson")},
                    "multipart/form-data": {"schema": _ref("VerifyLicenceForm")},
                },
            },
            "responses": {
                "200": {
                    "description": "The verdict, its reason and the fields.",
                    "content": _json(_ref("LicenceVerification")),
                },
                "400": _problem_response("Not exactly one licence input."),
                "413": {"$ref": "#/components/responses/TooLarge"},
                "429": {"$ref": "#/components/responses/TooManyRequests"},
            },
        }
    },
}

_DOCUMENT["paths"].update(_LICENCE_PATHS)
_DOCUMENT["components"]["schemas"].update(_LICENCE_SCHEMAS)


def openapi_document() -> dict[str, Any]:
    """The document (a copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
