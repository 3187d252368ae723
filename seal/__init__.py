"""seal — official electronic seals: make them, stamp PDFs with them, verify sealed PDFs.

    registry = SealRegistry(ra=ra, revocation=revocation)
    seal = registry.make_seal(SealRequest(agency_uscc=uscc, kind=SealKind.CONTRACT))
    authorization = registry.authorize_stamp(seal.id, client_id=client)
    stamper = Stamper(registry.credential(authorization), services=trust_services)
    sealed = registry.stamp_document(authorization, stamper, pdf, StampRequest(...))
    report = verify_pdf(sealed, trust_roots=[root])
"""

from seal.errors import DocumentLockedError, SealError, StampError, TrustServiceError
from seal.image import SealImageSpec, SealKind, render_seal_pdf, render_seal_png
from seal.lifecycle import (
    SealRecord,
    SealRegistry,
    SealRequest,
    SealStatus,
    StampAuthorization,
    describe_seal_record,
    parse_seal_kind,
)
from seal.sesdata import SealData, SealDataError, describe_seal, parse_seal, verify_seal
from seal.stamping import (
    At,
    Level,
    OnKeyword,
    SealCredential,
    SeamSeal,
    Side,
    Stamper,
    StampRequest,
    stamp_batch,
    stamp_pdf,
)
from seal.trust_services import TrustServices, http_trust_services, node_trust_services
from seal.verify import PdfVerification, VerifyLimits, verify_pdf

__all__ = [
    "SealRegistry",
    "SealRequest",
    "SealRecord",
    "SealStatus",
    "StampAuthorization",
    "describe_seal_record",
    "parse_seal_kind",
    "SealKind",
    "SealImageSpec",
    "render_seal_pdf",
    "render_seal_png",
    "SealData",
    "parse_seal",
    "verify_seal",
    "describe_seal",
    "Stamper",
    "StampRequest",
    "At",
    "OnKeyword",
    "SeamSeal",
    "Side",
    "Level",
    "SealCredential",
    "stamp_pdf",
    "stamp_batch",
    "TrustServices",
    "node_trust_services",
    "http_trust_services",
    "verify_pdf",
    "PdfVerification",
    "VerifyLimits",
    "SealError",
    "SealDataError",
    "StampError",
    "DocumentLockedError",
    "TrustServiceError",
]
