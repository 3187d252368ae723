"""certs — electronic licences: types, identifiers, the sealed PDF, the LC1 QR token,
SD-JWT selective disclosure and status lists.

    licence_type = get_licence_type(code)
    data = validate_licence_data(licence_type, raw)
    token = encode_token(claims, signer_key=key, signer_certificate=cert)
    result = verify_token(token, trust=SignerList(...), at=now)

    licences = LicenceRegistry(seals=seals, services=trust_services, region=region,
                               base_url=public_url)
    issued = licences.issue_licence(type_code, agency_uscc, data, actor=actor)
    result = verify_licence(token=issued.token, trust=licences.licence_trust(),
                            status_source=licences.status_source(), now=now)
"""

from certs.errors import LicenseError
from certs.identifiers import LicenceIdentifier
from certs.issuance import (
    BatchIssuance,
    IssuedLicence,
    LicenceConflictError,
    LicenceNotFoundError,
    LicenceRecord,
    LicenceRegistry,
    LicenceRequest,
    LicenceStateError,
    LicenceStatus,
    NoOfficialSealError,
)
from certs.layout import render_licence_pdf, seal_spot, usage_watermark
from certs.qr import qr_png, read_qr
from certs.sdjwt import issue_sd_jwt, present, verify_presentation
from certs.status import StatusList, StatusType, decode_and_verify_status_list
from certs.status_service import (
    DocumentSignerError,
    StatusListNotFoundError,
    StatusListUnavailableError,
)
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
from certs.usage_codes import UsageCodeError, UsageCodeRejectedError
from certs.verdict import Verdict
from certs.verify import (
    LicenceTrust,
    LicenceVerification,
    LicenceVerifyRequestError,
    StatusListCache,
    StatusSource,
    http_status_fetcher,
    verify_licence,
)

__all__ = [
    "BatchIssuance",
    "DocumentSignerError",
    "IssuedLicence",
    "LicenceConflictError",
    "LicenceIdentifier",
    "LicenceNotFoundError",
    "LicenceRecord",
    "LicenceRegistry",
    "LicenceRequest",
    "LicenceStateError",
    "LicenceStatus",
    "LicenceTrust",
    "LicenceVerification",
    "LicenceVerifyRequestError",
    "LicenseError",
    "NoOfficialSealError",
    "SignerList",
    "SignerTrust",
    "StatusList",
    "StatusListCache",
    "StatusListNotFoundError",
    "StatusListUnavailableError",
    "StatusSource",
    "StatusType",
    "TrustedSigner",
    "UsageCodeError",
    "UsageCodeRejectedError",
    "Verdict",
    "decode_and_verify_status_list",
    "default_licence_types",
    "describe_types",
    "encode_token",
    "encode_tokens",
    "get_licence_type",
    "http_status_fetcher",
    "issue_sd_jwt",
    "present",
    "qr_png",
    "read_qr",
    "render_licence_pdf",
    "seal_spot",
    "usage_watermark",
    "validate_licence_data",
    "verify_licence",
    "verify_presentation",
    "verify_token",
]
