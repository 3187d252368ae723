"""pki — the region's certificate authority and its registry of agencies and principals.

    ca = CertificateAuthority(keystore=store, sessions=sessions, endpoints=NodeEndpoints(url))
    run_ceremony(load_ceremony_config(path), ca=ca)
    ra = RegistrationAuthority(ca=ca, keystore=store, sessions=sessions, organization=org)
    issued = ra.issue_with_new_key(profile_name="seal", key_label="seal-1", agency_uscc=uscc)
    RevocationService(ca=ca).revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
"""

from pki.ca import CertificateAuthority, IssuanceRequest, IssuedCertificate, Issuer
from pki.ca_models import RevocationReason, ServicePurpose
from pki.ceremony import CeremonyResult, run_ceremony
from pki.ceremony_config import DEMO_CEREMONY_PATH, CeremonyConfig, load_ceremony_config
from pki.certificates import NodeEndpoints
from pki.errors import PkiError
from pki.models import StaffRole
from pki.profiles import PROFILES, CertificateProfile, get_profile
from pki.ra import RegistrationAuthority
from pki.registry import (
    AgencyRecord,
    ApiClientRecord,
    StaffUserRecord,
    add_api_client,
    add_staff_user,
    authenticate_client,
    authenticate_staff,
    get_agency,
    list_agencies,
    register_agency,
)
from pki.revocation import RevocationService, parse_reason
from pki.timestamping import TimestampService
from pki.uscc import validate_uscc

__all__ = [
    "CertificateAuthority",
    "IssuanceRequest",
    "IssuedCertificate",
    "Issuer",
    "RegistrationAuthority",
    "RevocationService",
    "RevocationReason",
    "TimestampService",
    "ServicePurpose",
    "NodeEndpoints",
    "CeremonyConfig",
    "CeremonyResult",
    "DEMO_CEREMONY_PATH",
    "load_ceremony_config",
    "run_ceremony",
    "PROFILES",
    "CertificateProfile",
    "get_profile",
    "parse_reason",
    "PkiError",
    "StaffRole",
    "AgencyRecord",
    "ApiClientRecord",
    "StaffUserRecord",
    "register_agency",
    "get_agency",
    "list_agencies",
    "add_api_client",
    "add_staff_user",
    "authenticate_client",
    "authenticate_staff",
    "validate_uscc",
]
