"""hsm_sim — the key store: private keys are generated, used and destroyed here, never exported.

store = open_keystore(os.environ["YINXIN_HSM"], pin=os.environ["YINXIN_HSM_PIN"], audit=log)
store.generate_key("ca-root", KeyAlgorithm.EC_P384, frozenset({KeyUsage.CERT_SIGN}))
with signing_context(actor="ceremony", operation="issue-root"):
    certificate = builder.sign(store.private_key("ca-root", usage=KeyUsage.CERT_SIGN),
                               hashes.SHA384())
"""

from hsm_sim.api import (
    AuditEvent,
    AuditResult,
    AuditSink,
    HashName,
    KeyAlgorithm,
    KeyInfo,
    KeyStore,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
    SigningContext,
    current_signing_context,
    signing_context,
)
from hsm_sim.audit import AuditReport, SqlAuditLog, verify_audit_log
from hsm_sim.errors import (
    AuditError,
    AuditUnavailableError,
    ErrorCategory,
    HsmError,
    InvalidKeyRequestError,
    KeyExistsError,
    KeyNotExportableError,
    KeyNotFoundError,
    KeyStoreConfigError,
    PinIncorrectError,
    PinMissingError,
    TokenExistsError,
    TokenLockedError,
    TokenNotFoundError,
    TokenUnavailableError,
    TokenTamperedError,
    UnsupportedAlgorithmError,
    UsageNotPermittedError,
)
from hsm_sim.keys import EcKeyHandle, Ed25519KeyHandle, KeyHandle, RsaKeyHandle
from hsm_sim.soft_token import init_soft_token
from hsm_sim.spec import open_keystore, parse_keystore_spec, unlock_token

__all__ = [
    "AuditError",
    "SqlAuditLog",
    "verify_audit_log",
    "AuditReport",
    "AuditEvent",
    "AuditResult",
    "AuditSink",
    "AuditUnavailableError",
    "EcKeyHandle",
    "Ed25519KeyHandle",
    "ErrorCategory",
    "HashName",
    "HsmError",
    "InvalidKeyRequestError",
    "KeyAlgorithm",
    "KeyExistsError",
    "KeyHandle",
    "KeyInfo",
    "KeyNotExportableError",
    "KeyNotFoundError",
    "KeyStore",
    "KeyStoreConfigError",
    "KeyUsage",
    "PinIncorrectError",
    "PinMissingError",
    "RsaKeyHandle",
    "RsaPadding",
    "SignatureMechanism",
    "SigningContext",
    "TokenExistsError",
    "TokenLockedError",
    "TokenNotFoundError",
    "TokenUnavailableError",
    "TokenTamperedError",
    "UnsupportedAlgorithmError",
    "UsageNotPermittedError",
    "current_signing_context",
    "init_soft_token",
    "open_keystore",
    "parse_keystore_spec",
    "signing_context",
    "unlock_token",
]
