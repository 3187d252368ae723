"""GB/T 38540 seal data: the real files in shared/vectors/ses, our own v4 seals, hostile input.

Run with `-s -k describe` to print the description of every vector file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hsm_sim import (
    AuditEvent,
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyUsage,
    SignatureMechanism,
    init_soft_token,
    open_keystore,
    signing_context,
)
from hsm_sim.soft_token import MIN_SCRYPT_LOG2_N
from seal import _ses_asn1 as asn1
from seal.sesdata import (
    ECDSA_WITH_SHA256,
    MAX_DATA_BYTES,
    SM2_WITH_SM3,
    CertDigest,
    CertListType,
    ExtData,
    SealData,
    SealDataError,
    SealInfo,
    SealPicture,
    SealSigningError,
    build_seal,
    describe_seal,
    describe_signature,
    encode_seal,
    encode_seal_info,
    parse_seal,
    parse_signature,
    verify_seal,
    verify_signature,
)
from tests.conftest import require_tool

UTC = dt.UTC
GENERATED = Path(__file__).resolve().parent.parent / "vectors" / "ses-generated"
OFDRW_SUBJECT = "CN=Test Certificate,L=Hangzhou,ST=Zhejiang,O=OFD R&W,C=CN"
DEFAULT_SM2_ID = "distid:1234567812345678"


@pytest.fixture(scope="module")
def ses_dir(shared_dir: Path) -> Path:
    return shared_dir / "vectors" / "ses"


# --------------------------------------------------------------------------- helpers


def _self_signed(common_name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Yinxin Test"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@functools.cache
def _maker() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _self_signed("Yinxin Test Seal Maker", key)


@functools.cache
def _signer_certificates() -> tuple[bytes, bytes]:
    return tuple(  # type: ignore[return-value]
        _self_signed(f"Yinxin Test Signer {n}", ec.generate_private_key(ec.SECP256R1()))
        for n in (1, 2)
    )


def _maker_sign(data: bytes) -> bytes:
    return _maker()[0].sign(data, ec.ECDSA(hashes.SHA256()))


def _info(**changes: object) -> SealInfo:
    base = SealInfo(
        es_id="11010000000000000009",
        name="测试市市场监督管理局",
        seal_type=1,
        vendor_id="YINXIN",
        created=dt.datetime(2025, 6, 1, 8, tzinfo=UTC),
        valid_start=dt.datetime(2025, 6, 1, 8, tzinfo=UTC),
        valid_end=dt.datetime(2030, 6, 1, 8, tzinfo=UTC),
        picture=SealPicture("PNG", b"\x89PNG\r\n\x1a\n-not-really", 40, 40),
        certificates=(_signer_certificates()[0],),
    )
    return dataclasses.replace(base, **changes)


def _build(info: SealInfo) -> bytes:
    return build_seal(info, maker_certificate=_maker()[1], sign=_maker_sign)


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


# --------------------------------------------------------------------------- real files

# What each file in shared/vectors/ses holds, read with `openssl asn1parse -inform DER`
# and confirmed by this parser: (version, esID, name, type, vendor, picture type/bytes/mm,
# certificate-list length, timestamp on the seal).
SEAL_VECTORS = {
    "UserV1.esl": (
        1,
        "40C8CDD24DEF43388B86E62CCE1D6832",
        "OFDRW测试用印章",
        1,
        "OFDR&WTest",
        False,
    ),
    "UserV4.esl": (
        4,
        "51f044b76510434e9bc67a1185c2fba5",
        "OFD R&W 测试用印章",
        3,
        "OFDR&WTest",
        False,
    ),
    "UserV5.esl": (
        5,
        "09aaf39291e049e4b3d716414590937e",
        "OFD R&W V5测试用印章",
        3,
        "OFDR&WTestV5",
        False,
    ),
    "UserV5_ts.esl": (
        5,
        "55a4a957189a48f596706fb431e962c5",
        "OFD R&W V5测试用印章",
        3,
        "OFDR&WTestV5",
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(SEAL_VECTORS))
def test_vector_seal_parses_and_its_sm2_maker_signature_verifies(
    ses_dir: Path, name: str
) -> None:
    der = (ses_dir / name).read_bytes()
    version, es_id, seal_name, seal_type, vendor, timestamped = SEAL_VECTORS[name]

    seal = parse_seal(der)
    info = seal.info
    assert (info.version, info.es_id, info.name, info.seal_type, info.vendor_id) == (
        version,
        es_id,
        seal_name,
        seal_type,
        vendor,
    )
    assert info.picture.image_type == "PNG"
    assert info.picture.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(info.picture.data) == 15693
    assert (info.picture.width_mm, info.picture.height_mm) == (40, 40)
    assert info.cert_list_type is CertListType.CERTIFICATES
    assert len(info.certificates) == 1
    assert info.valid_start < info.valid_end
    assert all(
        t.tzinfo is UTC for t in (info.created, info.valid_start, info.valid_end)
    )
    assert (seal.timestamp is not None) == timestamped
    assert seal.signature_algorithm == SM2_WITH_SM3
    # Maker and signer are two certificates that happen to share one subject.
    assert seal.maker_certificate != info.certificates[0]

    check = verify_seal(seal)
    assert check.maker_signature_ok, check.reason
    assert check.algorithm == "sm2-with-sm3"
    assert check.maker_subject == OFDRW_SUBJECT
    assert check.validity == (info.valid_start, info.valid_end)


def test_vector_v5_timestamp_is_the_placeholder_ofdrw_wrote(ses_dir: Path) -> None:
    # ofdrw's test puts three bytes 01 02 03 in the [0] timeStamp, not an RFC 3161 token.
    assert (
        parse_seal((ses_dir / "UserV5_ts.esl").read_bytes()).timestamp
        == b"\x01\x02\x03"
    )


@pytest.mark.parametrize("name", ["UserV4.esl", "UserV5.esl", "UserV5_ts.esl"])
def test_vector_38540_seal_is_der_and_reencodes_byte_for_byte(
    ses_dir: Path, name: str
) -> None:
    der = (ses_dir / name).read_bytes()
    assert encode_seal(parse_seal(der)) == der


def test_v4_maker_signs_der_of_seal_info_exactly_as_in_the_file(ses_dir: Path) -> None:
    der = (ses_dir / "UserV4.esl").read_bytes()
    seal = parse_seal(der)
    # SESeal header is 4 bytes (30 82 xx xx); SES_SealInfo follows it.
    assert seal.signed_content == der[4 : 4 + len(seal.signed_content)]
    assert core.Sequence.load(seal.signed_content)[1].native == seal.info.es_id
    # The other construction (GM/T 0031's SEQUENCE of sealInfo, cert, algorithm) does not
    # verify on the real file: GB/T 38540 signs the seal info alone.
    outer = core.Sequence.load(der)
    other = core.Sequence()
    other.contents = outer[0].dump() + outer[1].dump() + outer[2].dump()
    alternative = dataclasses.replace(seal, signed_content=other.dump())
    assert not verify_seal(alternative).maker_signature_ok


def test_v1_maker_signs_the_sequence_of_seal_info_cert_and_algorithm(
    ses_dir: Path,
) -> None:
    der = (ses_dir / "UserV1.esl").read_bytes()
    seal = parse_seal(der)
    outer = core.Sequence.load(der)
    sign_info = outer[1]
    expected = core.Sequence()
    expected.contents = outer[0].dump() + sign_info[0].dump() + sign_info[1].dump()
    assert seal.signed_content == expected.dump()
    assert verify_seal(seal).maker_signature_ok
    seal_info_only = dataclasses.replace(seal, signed_content=outer[0].dump())
    assert not verify_seal(seal_info_only).maker_signature_ok


def test_v1_seal_is_read_but_never_written(ses_dir: Path) -> None:
    seal = parse_seal((ses_dir / "UserV1.esl").read_bytes())
    with pytest.raises(SealDataError, match="version 1 is not written"):
        encode_seal(seal)


@pytest.mark.parametrize(
    ("name", "version", "signed_at", "seal_es_id"),
    [
        (
            "SignedValueV4.dat",
            4,
            dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=UTC),
            "51f044b76510434e9bc67a1185c2fba5",
        ),
        (
            "SignedValueV5.dat",
            5,
            dt.datetime(2026, 4, 24, 8, 53, 26, tzinfo=UTC),
            "309093c121454e56955f3be47ff728a3",
        ),
    ],
)
def test_vector_signature_parses_and_both_sm2_signatures_verify(
    ses_dir: Path, name: str, version: int, signed_at: dt.datetime, seal_es_id: str
) -> None:
    der = (ses_dir / name).read_bytes()
    signature = parse_signature(der)
    assert signature.version == version
    assert signature.seal.info.version == version
    assert signature.seal.info.es_id == seal_es_id
    assert signature.signed_at == signed_at
    assert signature.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"
    # ofdrw's test signs a placeholder digest: 32 zero bytes.
    assert signature.data_hash == bytes(32)
    assert signature.timestamp is None
    assert signature.signature_algorithm == SM2_WITH_SM3
    assert signature.signer_certificate in signature.seal.info.certificates
    # The signer signs DER(TBS_Sign), the first element, as it stands in the file.
    assert signature.signed_content == core.Sequence.load(der)[0].dump()

    check = verify_signature(signature)
    assert check.signature_ok and check.seal.maker_signature_ok, check.reason
    assert check.signer_listed and check.signed_within_validity
    assert check.ok
    assert check.signer_subject == OFDRW_SUBJECT


def test_describe_every_vector_file(ses_dir: Path) -> None:
    for path in sorted(ses_dir.iterdir()):
        if path.suffix == ".esl":
            description = describe_seal(parse_seal(path.read_bytes()))
            assert description["maker_subject"] == OFDRW_SUBJECT
        elif path.suffix == ".dat":
            description = describe_signature(parse_signature(path.read_bytes()))
            assert description["seal"]["certificates"] == [OFDRW_SUBJECT]
        else:
            continue
        text = json.dumps(description, ensure_ascii=False, sort_keys=True)
        assert json.loads(text) == description
        print(f"{path.name}: {text}")


def test_tampered_vector_seal_parses_but_does_not_verify(ses_dir: Path) -> None:
    der = bytearray((ses_dir / "UserV4.esl").read_bytes())
    at = der.index("测试".encode())
    der[at : at + 6] = "伪造".encode()
    seal = parse_seal(bytes(der))
    assert seal.info.name == "OFD R&W 伪造用印章"
    check = verify_seal(seal)
    assert not check.maker_signature_ok
    assert check.reason == "maker: the signature does not verify"


def test_tampered_vector_signature_fails_on_the_signer_signature(ses_dir: Path) -> None:
    der = bytearray((ses_dir / "SignedValueV4.dat").read_bytes())
    at = der.index(b"/Doc_0/Signs/Sign_0")
    der[at + 5] = ord("1")
    check = verify_signature(parse_signature(bytes(der)))
    assert not check.signature_ok and check.seal.maker_signature_ok
    assert not check.ok
    assert check.reason == "signer: the signature does not verify"


# --------------------------------------------------------------------------- lenient reading


def _der_sequence(*parts: bytes) -> bytes:
    sequence = core.Sequence()
    sequence.contents = b"".join(parts)
    return sequence.dump()


def _time_kind(der: bytes, field: str) -> str:
    return asn1.SESeal.load(der)["e_seal_info"]["property"][field].name


def test_lenient_reading_of_utctime_octet_string_and_explicit_default(
    ses_dir: Path,
) -> None:
    """UserV4.esl re-written the way non-conformant vendors write: UTCTime times, the
    signature in an OCTET STRING, an ExtData spelling out its DEFAULT critical FALSE."""
    original = parse_seal((ses_dir / "UserV4.esl").read_bytes())
    seal = asn1.SESeal.load((ses_dir / "UserV4.esl").read_bytes())
    prop = seal["e_seal_info"]["property"]
    for field in ("create_date", "valid_start", "valid_end"):
        prop[field] = asn1.SesTime(name="utc_time", value=prop[field].chosen.native)
    seal["signed_value"] = asn1.BitsOrOctets(
        name="octets", value=seal["signed_value"].chosen.native
    )
    outer = core.Sequence.load(seal.dump(force=True))
    info = outer[0]
    # ExtData { 1.2.156.1, BOOLEAN FALSE, OCTET STRING "v" }: DER would omit the BOOLEAN.
    ext_datas = bytes.fromhex("300e300c06042a811c01010100040176")
    lenient = _der_sequence(
        _der_sequence(*(info[i].dump() for i in range(4)), ext_datas),
        *(outer[i].dump() for i in range(1, 4)),
    )

    parsed = parse_seal(lenient)
    assert parsed.info.valid_start == original.info.valid_start
    assert parsed.info.valid_end == original.info.valid_end
    assert parsed.info.ext_datas == (ExtData("1.2.156.1", b"v", critical=False),)
    assert parsed.signature == original.signature
    # The writer is strict: GeneralizedTime, BIT STRING, the DEFAULT left out.
    strict = encode_seal(parsed)
    assert strict != lenient
    assert parse_seal(strict) == parsed
    assert bytes.fromhex("300b300906042a811c01040176") in strict
    times = ("create_date", "valid_start", "valid_end")
    assert {_time_kind(lenient, t) for t in times} == {"utc_time"}
    assert {_time_kind(strict, t) for t in times} == {"generalized_time"}
    assert asn1.SESeal.load(strict)["signed_value"].name == "bits"


def test_v1_signature_with_utctime_text_or_a_token_in_time_info(ses_dir: Path) -> None:
    seal_der = (ses_dir / "UserV1.esl").read_bytes()
    signer = parse_seal(seal_der).info.certificates[0]

    def v1_signature(time_info: bytes) -> bytes:
        return asn1.SesSignatureV1(
            {
                "to_sign": {
                    "version": 1,
                    "eseal": core.Any.load(seal_der),
                    "time_info": asn1.BitsOrOctets(name="bits", value=time_info),
                    "data_hash": asn1.BitsOrOctets(name="bits", value=bytes(32)),
                    "property_info": "doc-1",
                    "cert": signer,
                    "signature_algorithm": SM2_WITH_SM3,
                },
                "signature": asn1.BitsOrOctets(name="octets", value=b"\x30\x00"),
            }
        ).dump()

    timed = parse_signature(v1_signature(b"201012111403Z"))
    assert timed.version == 1
    assert timed.signed_at == dt.datetime(2020, 10, 12, 11, 14, 3, tzinfo=UTC)
    assert timed.timestamp is None
    assert timed.seal == parse_seal(seal_der)
    assert timed.signer_certificate == signer
    check = verify_signature(timed)
    assert check.seal.maker_signature_ok and check.signer_listed
    assert not check.signature_ok  # the signature value is an empty SEQUENCE

    token = parse_signature(v1_signature(b"\x30\x03\x02\x01\x01"))
    assert token.signed_at is None and token.timestamp == b"\x30\x03\x02\x01\x01"
    assert not verify_signature(token).signed_within_validity


# --------------------------------------------------------------------------- our v4 seals


def test_built_seal_round_trips_and_its_maker_signature_verifies() -> None:
    info = _info(ext_datas=(ExtData("1.2.156.112233.1", b"\x04\x02ok", critical=True),))
    der = _build(info)
    seal = parse_seal(der)
    assert seal.info == info
    assert seal.maker_certificate == _maker()[1]
    assert seal.signature_algorithm == ECDSA_WITH_SHA256
    assert seal.signed_content == encode_seal_info(info)
    assert encode_seal(seal) == der
    check = verify_seal(seal)
    assert check.maker_signature_ok and check.algorithm == "ecdsa-with-sha256"
    assert check.maker_subject == "O=Yinxin Test,CN=Yinxin Test Seal Maker"


def test_built_seal_is_accepted_by_openssl(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    info = _info()
    der = _build(info)
    (tmp_path / "seal.der").write_bytes(der)
    parsed = subprocess.run(
        [openssl, "asn1parse", "-inform", "DER", "-in", tmp_path / "seal.der"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert ":ecdsa-with-SHA256" in parsed and "GENERALIZEDTIME" in parsed
    # OpenSSL checks the maker signature over DER(SES_SealInfo) on its own.
    key = x509.load_der_x509_certificate(_maker()[1]).public_key()
    (tmp_path / "maker.pem").write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "tbs").write_bytes(encode_seal_info(info))
    (tmp_path / "sig").write_bytes(parse_seal(der).signature)
    result = subprocess.run(
        [
            openssl,
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "maker.pem",
            "-signature",
            tmp_path / "sig",
            tmp_path / "tbs",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "Verified OK"


class _Events:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        self.events.extend(events)


def test_seal_signed_by_the_software_hsm_is_audited_and_verifies(
    tmp_path: Path,
) -> None:
    init_soft_token(
        tmp_path / "token",
        user_pin="4821-user",
        so_pin="9377-officer",
        scrypt_log2_n=MIN_SCRYPT_LOG2_N,
    )
    audit = _Events()
    store = open_keystore(f"soft:{tmp_path / 'token'}", pin="4821-user", audit=audit)
    store.generate_key("seal-maker", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    # The maker certificate would come from the CA; a self-signed one by the HSM key will do.
    handle = store.private_key("seal-maker", usage=KeyUsage.SEAL)
    with signing_context(actor="test", operation="self-sign-maker"):
        maker_certificate = _self_signed("HSM Seal Maker", handle)
    info = _info()

    def hsm_sign(data: bytes) -> bytes:
        return store.sign(
            "seal-maker", data, SignatureMechanism(HashName.SHA256), usage=KeyUsage.SEAL
        )

    with signing_context(actor="test", operation="make-seal"):
        der = build_seal(info, maker_certificate=maker_certificate, sign=hsm_sign)
    assert verify_seal(parse_seal(der)).maker_signature_ok
    made = [e for e in audit.events if e.operation == "make-seal"]
    assert [(e.result, e.data_sha256) for e in made] == [
        (AuditResult.GRANTED, hashlib.sha256(encode_seal_info(info)).hexdigest())
    ]


@pytest.fixture(scope="module")
def sm2_maker(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[bytes, Callable[..., bytes]]:
    """An SM2 key and self-signed certificate made by OpenSSL, and an OpenSSL signer."""
    openssl = require_tool("openssl")
    work = tmp_path_factory.mktemp("sm2")
    key = work / "sm2.pem"
    subprocess.run(
        [
            openssl,
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            key,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            openssl,
            "req",
            "-new",
            "-x509",
            "-key",
            key,
            "-sm3",
            "-sigopt",
            DEFAULT_SM2_ID,
            "-days",
            "30",
            "-subj",
            "/CN=SM2 Test Seal Maker/O=Yinxin Test",
            "-outform",
            "DER",
            "-out",
            work / "cert.der",
        ],
        check=True,
        capture_output=True,
    )

    def sign(data: bytes, *, distid: bool = True) -> bytes:
        (work / "tbs").write_bytes(data)
        options = ["-pkeyopt", DEFAULT_SM2_ID] if distid else []
        return subprocess.run(
            [
                openssl,
                "pkeyutl",
                "-sign",
                "-inkey",
                key,
                "-rawin",
                "-digest",
                "sm3",
                *options,
                "-in",
                work / "tbs",
            ],
            check=True,
            capture_output=True,
        ).stdout

    return (work / "cert.der").read_bytes(), sign


def test_sm2_seal_signed_by_openssl_verifies_with_the_default_user_id(
    sm2_maker,
) -> None:
    certificate, openssl_sign = sm2_maker
    info = _info(
        cert_list_type=CertListType.DIGESTS,
        certificates=(),
        cert_digests=(CertDigest("SM3", _sm3(_signer_certificates()[0])),),
    )
    der = build_seal(
        info,
        maker_certificate=certificate,
        sign=openssl_sign,
        signature_algorithm=SM2_WITH_SM3,
    )
    seal = parse_seal(der)
    assert seal.info == info
    assert verify_seal(seal).maker_signature_ok
    assert encode_seal(seal) == der
    # Without the GM/T 0009 default ID OpenSSL 3 hashes an empty ID into Z: a different
    # signature, which build_seal refuses because it does not verify.
    with pytest.raises(SealSigningError, match="not made by its certificate's key"):
        build_seal(
            info,
            maker_certificate=certificate,
            sign=functools.partial(openssl_sign, distid=False),
            signature_algorithm=SM2_WITH_SM3,
        )


def test_signer_listed_by_certificate_digest(ses_dir: Path, sm2_maker) -> None:
    signature = parse_signature((ses_dir / "SignedValueV4.dat").read_bytes())
    certificate, openssl_sign = sm2_maker

    def seal_listing(digest: bytes) -> SealData:
        info = _info(
            cert_list_type=CertListType.DIGESTS,
            certificates=(),
            cert_digests=(CertDigest("SM3", digest),),
            valid_start=dt.datetime(2020, 1, 1, tzinfo=UTC),
        )
        return parse_seal(
            build_seal(
                info,
                maker_certificate=certificate,
                sign=openssl_sign,
                signature_algorithm=SM2_WITH_SM3,
            )
        )

    listed = dataclasses.replace(
        signature, seal=seal_listing(_sm3(signature.signer_certificate))
    )
    assert verify_signature(listed).signer_listed
    unlisted = dataclasses.replace(signature, seal=seal_listing(bytes(32)))
    check = verify_signature(unlisted)
    assert not check.signer_listed and not check.ok
    assert (
        check.reason == "the signer's certificate is not in the seal's certificate list"
    )


@pytest.mark.parametrize(
    ("name", "algorithm", "list_type"),
    [
        ("ValidSealV4EcdsaP256.esl", "ecdsa-with-sha256", CertListType.CERTIFICATES),
        ("ValidSealV4Sm2CertDigests.esl", "sm2-with-sm3", CertListType.DIGESTS),
    ],
)
def test_generated_golden_seals(
    name: str, algorithm: str, list_type: CertListType
) -> None:
    der = (GENERATED / name).read_bytes()
    seal = parse_seal(der)
    assert encode_seal(seal) == der
    check = verify_seal(seal)
    assert check.maker_signature_ok and check.algorithm == algorithm
    assert seal.info.version == 4 and seal.info.cert_list_type is list_type
    assert seal.info.picture.image_type == "SVG"


def test_generated_digest_seal_lists_the_signer_of_the_other_golden_seal() -> None:
    signer = parse_seal(
        (GENERATED / "ValidSealV4EcdsaP256.esl").read_bytes()
    ).info.certificates[0]
    digests = parse_seal(
        (GENERATED / "ValidSealV4Sm2CertDigests.esl").read_bytes()
    ).info.cert_digests
    assert digests == (CertDigest("SM3", _sm3(signer)),)


def test_build_refuses_a_key_that_is_not_the_maker_certificates() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SealSigningError):
        build_seal(
            _info(),
            maker_certificate=_maker()[1],
            sign=lambda data: other.sign(data, ec.ECDSA(hashes.SHA256())),
        )


def test_build_does_not_sign_when_the_certificate_cannot_fit_the_algorithm() -> None:
    calls: list[bytes] = []
    with pytest.raises(SealDataError, match="not an SM2 key"):
        build_seal(
            _info(),
            maker_certificate=_maker()[1],
            sign=lambda data: calls.append(data) or b"",
            signature_algorithm=SM2_WITH_SM3,
        )
    with pytest.raises(SealDataError, match="unsupported signature algorithm"):
        build_seal(
            _info(),
            maker_certificate=_maker()[1],
            sign=calls.append,
            signature_algorithm="1.2.3",
        )
    with pytest.raises(SealDataError, match="not a DER X.509 certificate"):
        build_seal(_info(), maker_certificate=b"\x30\x00", sign=calls.append)
    assert calls == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 1}, "version 1 is not written"),
        ({"es_id": "印章1"}, "es_id must be ASCII"),
        ({"es_id": ""}, "es_id is empty"),
        ({"vendor_id": "厂商"}, "vendor_id must be ASCII"),
        ({"name": "  "}, "name is empty"),
        ({"name": "\ud800"}, "not encodable as UTF-8"),
        ({"seal_type": -1}, "seal_type is out of range"),
        ({"created": dt.datetime(2025, 6, 1)}, "created must be an aware UTC datetime"),
        (
            {
                "valid_end": dt.datetime(
                    2030, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))
                )
            },
            "valid_end must be an aware UTC datetime",
        ),
        (
            {"valid_start": dt.datetime(2025, 6, 1, 8, 0, 0, 5, tzinfo=UTC)},
            "whole seconds",
        ),
        (
            {"valid_start": dt.datetime(2031, 1, 1, tzinfo=UTC)},
            "valid_start is after valid_end",
        ),
        ({"created": dt.datetime(999, 1, 1, tzinfo=UTC)}, "before the year 1000"),
        ({"picture": SealPicture("PNG", b"", 40, 40)}, "picture.data is empty"),
        (
            {"picture": SealPicture("PNG", b"x", 0, 40)},
            "picture.width_mm is out of range",
        ),
        ({"certificates": ()}, "certificates is empty"),
        (
            {"certificates": (b"not a certificate",)},
            r"certificates\[0\] is not a DER X.509",
        ),
        ({"cert_digests": (CertDigest("SM3", b"x"),)}, "cert_digests given with"),
        (
            {
                "cert_list_type": CertListType.DIGESTS,
                "certificates": (),
                "cert_digests": (CertDigest("SM3*", b"x"),),
            },
            "must be a PrintableString",
        ),
        ({"ext_datas": (ExtData("1.99.1", b""),)}, "not a valid object identifier"),
        ({"ext_datas": (ExtData("oid", b""),)}, "not a dotted object identifier"),
    ],
)
def test_encode_refuses_what_the_standard_does_not_allow(
    changes: dict, message: str
) -> None:
    with pytest.raises(SealDataError, match=message):
        encode_seal_info(_info(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"seal_type": True},
        {"name": b"bytes"},
        {"created": "2025-01-01"},
        {"certificates": [b"x"]},
    ],
)
def test_encode_refuses_wrong_types(changes: dict) -> None:
    with pytest.raises(TypeError):
        encode_seal_info(_info(**changes))


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty seal data"),
        (b"\x30" * 10, "truncated data"),
        (b"\x30\x80" * 40 + b"\x00\x00" * 40, "nested too deeply"),
        (b"\x30\x00\x00", "bytes after the end"),
        (b"\x30\x84\xff\xff\xff\xff", "longer than what holds it"),
        (b"\x30\x85\x01\x00\x00\x00\x00", "length is invalid"),
        (b"\x30\x03\x04\x80\x00", "primitive element has no length"),
        (
            b"\x30\x06\x02\x01\x01\x02\x01\x01",
            r"malformed SESeal \(GM/T 0031\): .*SesSealInfoV1",
        ),
        (b"\x30\x09\x02\x01\x01\x02\x01\x01\x02\x01\x01", "SESeal has 3 elements"),
        (b"\x02\x01\x01", "malformed SESeal"),
    ],
)
def test_hostile_seal_bytes_are_refused_with_a_reason(
    data: bytes, message: str
) -> None:
    with pytest.raises(SealDataError, match=message):
        parse_seal(data)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(SealDataError, match="larger than 4 MiB"):
        parse_seal(
            b"\x30\x84" + (MAX_DATA_BYTES).to_bytes(4, "big") + bytes(MAX_DATA_BYTES)
        )
    with pytest.raises(SealDataError, match="larger than 4 MiB"):
        parse_signature(bytes(MAX_DATA_BYTES + 1))


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_seal("30 00")  # type: ignore[arg-type]


def test_unknown_cert_list_type_and_bad_header_are_refused(ses_dir: Path) -> None:
    seal = asn1.SESeal.load((ses_dir / "UserV4.esl").read_bytes())
    seal["e_seal_info"]["property"]["cert_list_type"] = 3
    with pytest.raises(SealDataError, match="unsupported certListType 3"):
        parse_seal(seal.dump(force=True))
    seal = asn1.SESeal.load((ses_dir / "UserV4.esl").read_bytes())
    seal["e_seal_info"]["header"]["id"] = "XX"
    with pytest.raises(SealDataError, match='id is not "ES"'):
        parse_seal(seal.dump(force=True))


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("header", "version"), "version"),
        (("property", "type"), "type"),
        (("picture", "width"), "width"),
        (("picture", "height"), "height"),
    ],
)
def test_a_huge_integer_in_a_seal_is_refused(
    ses_dir: Path, path: tuple[str, str], field: str
) -> None:
    """An INTEGER of thousands of digits read into SealInfo broke everything that shows
    it: describe_seal's "JSON-safe" summary (json.dumps), repr(), a PDF report's
    to_json() (Python refuses int-to-str past 4300 digits) — a traceback from a hostile
    seal. Such an integer is refused when it is read."""
    seal = asn1.SESeal.load((ses_dir / "UserV4.esl").read_bytes())
    seal["e_seal_info"][path[0]][path[1]] = 1 << 20_000
    with pytest.raises(SealDataError, match=field):
        parse_seal(seal.dump(force=True))


def test_a_huge_version_in_a_signature_is_refused(ses_dir: Path) -> None:
    signature = asn1.SesSignature.load((ses_dir / "SignedValueV4.dat").read_bytes())
    signature["to_sign"]["version"] = -(1 << 20_000)
    with pytest.raises(SealDataError, match="version"):
        parse_signature(signature.dump(force=True))
def test_unreadable_maker_certificate_is_a_verdict_not_an_exception(
    ses_dir: Path,
) -> None:
    seal = parse_seal((ses_dir / "UserV4.esl").read_bytes())
    check = verify_seal(dataclasses.replace(seal, maker_certificate=b"garbage"))
    assert not check.maker_signature_ok and check.maker_subject is None
    assert check.reason == "maker: the certificate cannot be read"
    check = verify_seal(
        dataclasses.replace(seal, signature_algorithm=ECDSA_WITH_SHA256)
    )
    assert not check.maker_signature_ok
    assert "cannot be used for ecdsa-with-sha256" in check.reason


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def test_a_list_of_millions_of_items_is_refused_before_it_is_parsed(
    ses_dir: Path,
) -> None:
    """A certificate list of 1.9 million empty entries (under 4 MiB) took asn1crypto
    3.6 s and 300 MB to parse before the 256-entry limit could refuse it (and a PDF
    carries up to 32 seals). The shape check, which reads every header anyway, counts
    each element's items and refuses first."""
    import time

    seal = asn1.SESeal.load((ses_dir / "UserV4.esl").read_bytes())
    seal["e_seal_info"]["property"]["cert_list"] = core.Any.load(
        _der(0x30, b"\x04\x00" * 1_900_000)
    )
    data = seal.dump(force=True)
    assert len(data) < MAX_DATA_BYTES
    started = time.monotonic()
    with pytest.raises(SealDataError, match="too many items"):
        parse_seal(data)
    assert time.monotonic() - started < 1
@functools.cache
def _vector_bytes() -> tuple[bytes, ...]:
    from tests.conftest import SHARED

    folder = SHARED / "vectors" / "ses"
    found = (
        sorted(folder.glob("*.esl")) + sorted(folder.glob("*.dat"))
        if folder.is_dir()
        else []
    )
    return tuple(p.read_bytes() for p in found) + (_build(_info()),)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_vector_bytes())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _parse_any(data: bytes) -> None:
    for parse in (parse_seal, parse_signature):
        try:
            result = parse(data)
        except SealDataError:
            continue
        if isinstance(result, SealData):
            verify_seal(result)
            describe_seal(result)
        else:
            verify_signature(result)
            describe_signature(result)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_files_give_a_result_or_a_seal_data_error(data: bytes) -> None:
    _parse_any(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=512))
@example(b"\x30\x80" * 10_000)
@example(b"\x30\x02\xa0\x80")
@example(b"\x30\x04\x1f\xff\xff\xff")
def test_random_bytes_give_a_seal_data_error(data: bytes) -> None:
    _parse_any(data)


_ascii = st.text(
    st.characters(min_codepoint=0, max_codepoint=127), min_size=1, max_size=24
)
_times = st.datetimes(
    min_value=dt.datetime(1000, 1, 1),
    max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
).map(lambda moment: moment.replace(microsecond=0))
_oids = st.lists(st.integers(0, 2**40), min_size=1, max_size=5).flatmap(
    lambda tail: st.sampled_from(["1.2", "2.999", "0.39"]).map(
        lambda head: ".".join([head, *map(str, tail)])
    )
)


@st.composite
def _seal_infos(draw: st.DrawFn) -> SealInfo:
    start, end = sorted((draw(_times), draw(_times)))
    if draw(st.booleans()):
        lists: dict = {
            "certificates": tuple(
                draw(
                    st.lists(
                        st.sampled_from(_signer_certificates()), min_size=1, max_size=2
                    )
                )
            )
        }
    else:
        lists = {
            "cert_list_type": CertListType.DIGESTS,
            "cert_digests": tuple(
                draw(
                    st.lists(
                        st.builds(
                            CertDigest,
                            st.text(
                                st.sampled_from("SMH0123456789-: "),
                                min_size=1,
                                max_size=8,
                            ),
                            st.binary(min_size=1, max_size=64),
                        ),
                        min_size=1,
                        max_size=3,
                    )
                )
            ),
        }
    return SealInfo(
        es_id=draw(_ascii),
        name=draw(st.text(min_size=1, max_size=30).filter(str.strip)),
        seal_type=draw(st.integers(0, 2**31 - 1)),
        vendor_id=draw(_ascii),
        created=draw(_times),
        valid_start=start,
        valid_end=end,
        picture=SealPicture(
            draw(st.sampled_from(["PNG", "SVG", "GIF", "JPG", "BMP", "OFD"])),
            draw(st.binary(min_size=1, max_size=300)),
            draw(st.integers(1, 9999)),
            draw(st.integers(1, 9999)),
        ),
        ext_datas=tuple(
            draw(
                st.lists(
                    st.builds(ExtData, _oids, st.binary(max_size=40), st.booleans()),
                    max_size=3,
                )
            )
        ),
        **lists,
    )


@settings(max_examples=60, deadline=None)
@given(_seal_infos())
def test_any_seal_info_builds_parses_and_reencodes_byte_for_byte(
    info: SealInfo,
) -> None:
    der = _build(info)
    seal = parse_seal(der)
    assert seal.info == info
    assert encode_seal(seal) == der
    assert verify_seal(seal).maker_signature_ok
