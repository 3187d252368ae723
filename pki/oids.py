"""Every object identifier Yinxin defines, under one arc.

A `2.25.<uuid>` arc (ITU-T X.667, no registration needed) cannot be used: pkilint's
DER decoder (pyasn1-fasder) rejects any OID arc of 2^28 or more as a FATAL syntax
error, so no certificate carrying such a policy could pass the lint gate. Until the
project registers its own IANA Private Enterprise Number, the arc is under RFC 5612's
enterprise number for documentation (32473); moving is a change of this one line.
Sub-arcs:
  .1  certificate policies, one per profile
  .2  timestamp policies
  .3  CMS attributes
  .4  certificate extensions
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

__all__ = ["YINXIN_ARC", "ProjectOID", "StandardOID"]

YINXIN_ARC = "1.3.6.1.4.1.32473.1"


class ProjectOID:
    SEAL_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.1")
    DOCUMENT_SIGNER_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.2")
    OCSP_RESPONDER_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.3")
    TSA_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.4")
    API_CLIENT_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.5")
    CA_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.6")
    SEAL_MAKER_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.1.7")

    TIMESTAMP_POLICY = ObjectIdentifier(f"{YINXIN_ARC}.2.1")

    SEAL_DATA_ATTRIBUTE = ObjectIdentifier(f"{YINXIN_ARC}.3.1")


class StandardOID:
    """Standard identifiers cryptography does not name."""

    DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # RFC 9336 id-kp-documentSigning
    ORGANIZATION_IDENTIFIER = ObjectIdentifier("2.5.4.97")
    OCSP_NOCHECK = ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")
    ANY_POLICY = ObjectIdentifier("2.5.29.32.0")
