"""ASN.1 of the Chinese electronic-seal standards, as asn1crypto specs.

Two layouts exist:

- GM/T 0031-2014 ("v1"): SESeal ::= SEQUENCE { esealInfo SES_SealInfo, signInfo SES_SignInfo },
  times as UTCTime, no certListType, SES_Signature ::= SEQUENCE { toSign, signature }.
- GB/T 38540-2020 ("v4"): SESeal ::= SEQUENCE { eSealInfo, cert, signAlgID, signedValue },
  times as GeneralizedTime, SES_CertList chosen by certListType. The "v5" files of ofdrw
  (header version 5) use the same layout plus an optional `[0] EXPLICIT` timestamp on the
  seal, so one set of classes reads both.

Real files deviate from the texts (UTCTime where GeneralizedTime is due, OCTET STRING where
BIT STRING is due), so times and bit strings are CHOICEs here; the writer in
`seal.sesdata` always picks the alternative the standard names, which makes its output DER.
Field order and tagging were checked against the files in shared/vectors/ses and ofdrw's
BouncyCastle models (ofdrw-gm, ses/v1, ses/v4, ses/v5).
"""

from __future__ import annotations

from asn1crypto import core


class SesTime(core.Choice):
    """GeneralizedTime per GB/T 38540, UTCTime per GM/T 0031; readers take either."""

    _alternatives = [
        ("generalized_time", core.GeneralizedTime),
        ("utc_time", core.UTCTime),
    ]


class BitsOrOctets(core.Choice):
    """A BIT STRING of whole octets per the standards; some vendors write OCTET STRING."""

    _alternatives = [
        ("bits", core.OctetBitString),
        ("octets", core.OctetString),
    ]


class SesHeader(core.Sequence):
    _fields = [
        ("id", core.IA5String),
        ("version", core.Integer),
        ("vid", core.IA5String),
    ]


class ExtData(core.Sequence):
    _fields = [
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extn_value", core.OctetString),
    ]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class CertInfoList(core.SequenceOf):
    """certListType 1: the signers' certificates, each DER in an OCTET STRING."""

    _child_spec = core.OctetString


class CertDigestObj(core.Sequence):
    _fields = [
        ("type", core.PrintableString),
        ("value", core.OctetString),
    ]


class CertDigestList(core.SequenceOf):
    """certListType 2: digests of the signers' certificates."""

    _child_spec = CertDigestObj


class SesPictureInfo(core.Sequence):
    """SES_ESPictrueInfo (the standards' spelling): image type, bytes, size in mm."""

    _fields = [
        ("type", core.IA5String),
        ("data", core.OctetString),
        ("width", core.Integer),
        ("height", core.Integer),
    ]


class SesPropertyInfo(core.Sequence):
    """SES_ESPropertyInfo of GB/T 38540; `cert_list` is a CertInfoList or a CertDigestList,
    chosen by `cert_list_type` (a CHOICE without tags, so the reader decides)."""

    _fields = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list_type", core.Integer),
        ("cert_list", core.Any),
        ("create_date", SesTime),
        ("valid_start", SesTime),
        ("valid_end", SesTime),
    ]


class SesSealInfo(core.Sequence):
    _fields = [
        ("header", SesHeader),
        ("es_id", core.IA5String),
        ("property", SesPropertyInfo),
        ("picture", SesPictureInfo),
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SESeal(core.Sequence):
    """GB/T 38540-2020 SESeal; `time_stamp` only in the v5 variant. The maker signs
    DER(SES_SealInfo) (verified on every vector file)."""

    _fields = [
        ("e_seal_info", SesSealInfo),
        ("cert", core.OctetString),
        ("sign_alg_id", core.ObjectIdentifier),
        ("signed_value", BitsOrOctets),
        ("time_stamp", BitsOrOctets, {"explicit": 0, "optional": True}),
    ]


class TbsSign(core.Sequence):
    """TBS_Sign of GB/T 38540; `eseal` is kept raw so any seal layout can be read from it."""

    _fields = [
        ("version", core.Integer),
        ("eseal", core.Any),
        ("time_info", SesTime),
        ("data_hash", BitsOrOctets),
        ("property_info", core.IA5String),
        ("ext_datas", ExtensionDatas, {"explicit": 0, "optional": True}),
    ]


class SesSignature(core.Sequence):
    """GB/T 38540 SES_Signature: the signer signs DER(TBS_Sign)."""

    _fields = [
        ("to_sign", TbsSign),
        ("cert", core.OctetString),
        ("signature_alg_id", core.ObjectIdentifier),
        ("signature", BitsOrOctets),
        ("time_stamp", BitsOrOctets, {"explicit": 0, "optional": True}),
    ]


class SesPropertyInfoV1(core.Sequence):
    _fields = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list", CertInfoList),
        ("create_date", SesTime),
        ("valid_start", SesTime),
        ("valid_end", SesTime),
    ]


class SesSealInfoV1(core.Sequence):
    _fields = [
        ("header", SesHeader),
        ("es_id", core.IA5String),
        ("property", SesPropertyInfoV1),
        ("picture", SesPictureInfo),
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SesSignInfo(core.Sequence):
    """GM/T 0031 SES_SignInfo: the maker signs SEQUENCE { sealInfo, cert, signatureAlgorithm }
    (verified on UserV1.esl)."""

    _fields = [
        ("cert", core.OctetString),
        ("signature_algorithm", core.ObjectIdentifier),
        ("sign_data", BitsOrOctets),
    ]


class SESealV1(core.Sequence):
    _fields = [
        ("e_seal_info", SesSealInfoV1),
        ("sign_info", SesSignInfo),
    ]


class TbsSignV1(core.Sequence):
    """GM/T 0031 TBS_Sign; `time_info` holds UTCTime text or a timestamp token."""

    _fields = [
        ("version", core.Integer),
        ("eseal", core.Any),
        ("time_info", BitsOrOctets),
        ("data_hash", BitsOrOctets),
        ("property_info", core.IA5String),
        ("cert", core.OctetString),
        ("signature_algorithm", core.ObjectIdentifier),
    ]


class SesSignatureV1(core.Sequence):
    _fields = [
        ("to_sign", TbsSignV1),
        ("signature", BitsOrOctets),
    ]
