"""certs — electronic licences: types, identifiers, the sealed PDF, the LC1 QR token,
SD-JWT selective disclosure and status lists.

    licence_type = get_licence_type(code)
    data = validate_licence_data(licence_type, raw)
    token = encode_token(claims, signer_key=key, signer_certificate=cert)
    result = verify_token(token, trust=SignerList(...), at=now)
"""

from certs.errors import LicenseError
from certs.identifiers import LicenceIdentifier
from certs.layout import render_licence_pdf, seal_spot, usage_watermark
from certs.qr import qr_png, read_qr
from certs.sdjwt import issue_sd_jwt, present, verify_presentation
from certs.status import StatusList, StatusType, decode_and_verify_status_list
from certs.token import (
    SignerList,
    SignerTrust,
    TrustedSigner,
    encode_token,
    encode_tokens,
    verify_token,
)
from certs.types import (
    default_licence_types,
    describe_types,
    get_licence_type,
    validate_licence_data,
)
from certs.verdict import Verdict

__all__ = [
    "LicenceIdentifier",
    "default_licence_types",
    "get_licence_type",
    "describe_types",
    "validate_licence_data",
    "render_licence_pdf",
    "seal_spot",
    "usage_watermark",
    "encode_token",
    "encode_tokens",
    "verify_token",
    "SignerList",
    "SignerTrust",
    "TrustedSigner",
    "Verdict",
    "qr_png",
    "read_qr",
    "issue_sd_jwt",
    "present",
    "verify_presentation",
    "StatusList",
    "StatusType",
    "decode_and_verify_status_list",
    "LicenseError",
]
