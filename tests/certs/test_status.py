"""Token Status List: bit layout (the draft's own examples), the signed JWT form, hostile lists.

The list is signed by the region's real document signer (a soft-HSM key with its
certificate from the node's document CA), like the SD-JWT VC it serves.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from certs._cbor import CborLimits, decode_cbor, encode_cbor
from certs._cose import (
    ALG_ES256,
    assemble_sign1,
    der_to_raw_ecdsa,
    parse_sign1,
    sig_structure,
)
from certs.errors import InvalidStatusListError, StatusListError, StatusListFullError
from certs.sdjwt import (
    b64url_encode,
    issue_sd_jwt,
    present,
    sign_compact_jws,
    verify_presentation,
)
from certs.status import (
    MAX_STATUS_LIST_BYTES,
    StatusList,
    StatusType,
    allocate_index,
    decode_and_verify_status_list,
    decode_and_verify_status_list_cwt,
    encode_status_list_cwt,
    encode_status_list_jwt,
    status_of,
)
from certs.token import SignerList, TrustedSigner, signer_kid
from certs.verdict import Verdict
from hsm_sim.api import KeyUsage
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from tests.helpers.node import Node, build_node

URI = "https://zwfw.fj.example.gov.cn/status/1"
ISSUER = "https://zwfw.fj.example.gov.cn"


class DocumentSigner:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.label, self.certificate, _ = service_credential(
            node.ca, ServicePurpose.DOCUMENT_SIGNER
        )
        self.key = node.keystore.private_key(self.label, usage=KeyUsage.TOKEN)
        self.trust = SignerList([self.certificate])


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentSigner]:
    node = build_node(Path(tmp_path_factory.mktemp("status-node")) / "node")
    yield DocumentSigner(node)
    node.close()


@pytest.fixture(scope="module")
def now(signer: DocumentSigner) -> dt.datetime:
    """A little after the document signer's certificate was made."""
    return max(
        dt.datetime.now(dt.UTC), signer.certificate.not_valid_before_utc
    ).replace(microsecond=0) + dt.timedelta(seconds=1)


def encode(
    signer: DocumentSigner, statuses: StatusList, now: dt.datetime, **overrides: Any
) -> str:
    arguments: dict[str, Any] = {
        "uri": URI,
        "iat": now,
        "exp": now + dt.timedelta(days=1),
        "ttl": 3600,
        "signer_key": signer.key,
        "signer_certificate": signer.certificate,
        "issuer": ISSUER,
    }
    arguments.update(overrides)
    return encode_status_list_jwt(statuses, **arguments)


def decode(signer: DocumentSigner, token: str, now: dt.datetime, **options: Any):
    options.setdefault("expected_uri", URI)
    return decode_and_verify_status_list(token, trust=signer.trust, now=now, **options)


def signed_claims(
    signer: DocumentSigner, claims: Mapping[str, Any], typ: str = "statuslist+jwt"
) -> str:
    return sign_compact_jws(
        claims,
        typ=typ,
        signer_key=signer.key,
        signer_certificate=signer.certificate,
        operation="test",
    )


def list_claims(
    now: dt.datetime, lst: bytes, bits: int = 2, **claims: Any
) -> dict[str, Any]:
    base = {
        "sub": URI,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(hours=1)).timestamp()),
        "status_list": {"bits": bits, "lst": b64url_encode(lst)},
    }
    base.update(claims)
    return base


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the list itself -------------------------------------------------------------------


def test_one_bit_layout_is_the_draft_s_example() -> None:
    # draft-ietf-oauth-status-list §4.1: 16 statuses -> 0xB9 0xA3, lst "eNrbuRgAAhcBXQ".
    statuses = StatusList(size=16, bits=1)
    for idx, value in enumerate([1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]):
        statuses.set(idx, StatusType(value))
    assert statuses.to_bytes() == bytes([0xB9, 0xA3])
    assert zlib.decompress(b64url_decode("eNrbuRgAAhcBXQ")) == statuses.to_bytes()
    assert zlib.decompress(statuses.compressed()) == statuses.to_bytes()


def test_two_bit_layout_is_the_draft_s_example() -> None:
    # The draft's 2-bit example: 12 statuses -> 0xC9 0x44 0xF9, lst "eNo76fITAAPfAgc".
    expected = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
    statuses = StatusList.from_bytes(
        zlib.decompress(b64url_decode("eNo76fITAAPfAgc")), bits=2
    )
    assert statuses.size == 12
    assert [statuses.get(i) for i in range(12)] == expected
    mine = StatusList(size=12, bits=2)
    for idx, value in enumerate(expected):
        if value != 3:  # 3 is application-specific; Yinxin never writes it
            mine.set(idx, StatusType(value))
    # The same bytes with the two 3s (binary 11) left at 0.
    assert mine.to_bytes() == bytes([0xC9 & ~0xC0, 0x44, 0xF9 & ~0xF0])
    with pytest.raises(InvalidStatusListError, match="status value 3"):
        status_of(statuses, 3)


@settings(max_examples=50, deadline=None)
@given(
    bits=st.sampled_from([1, 2, 4, 8]),
    changes=st.lists(
        st.tuples(st.integers(0, 99), st.sampled_from(list(StatusType))), max_size=40
    ),
)
def test_set_and_get_agree_with_a_plain_list(bits: int, changes) -> None:
    statuses = StatusList(size=100, bits=bits)
    model = [StatusType.VALID] * 100
    for idx, status in changes:
        if status >= 1 << bits:
            with pytest.raises(StatusListError, match="does not fit"):
                statuses.set(idx, status)
            continue
        statuses.set(idx, status)
        model[idx] = status
    assert [status_of(statuses, i) for i in range(100)] == model
    again = StatusList.from_bytes(zlib.decompress(statuses.compressed()), bits)
    assert [again.get(i) for i in range(100)] == model


def test_a_suspension_is_lifted_and_a_revocation_recorded() -> None:
    statuses = StatusList(size=1000)
    statuses.set(7, StatusType.SUSPENDED)
    assert status_of(statuses, 7) is StatusType.SUSPENDED
    statuses.set(7, StatusType.VALID)
    statuses.set(8, StatusType.INVALID)
    assert [status_of(statuses, i) for i in (6, 7, 8, 9)] == [
        StatusType.VALID,
        StatusType.VALID,
        StatusType.INVALID,
        StatusType.VALID,
    ]


def test_bad_list_requests_are_refused() -> None:
    with pytest.raises(StatusListError, match="1, 2, 4 or 8"):
        StatusList(size=8, bits=3)
    with pytest.raises(StatusListError, match="positive"):
        StatusList(size=0)
    with pytest.raises(StatusListError, match="larger than allowed"):
        StatusList(size=MAX_STATUS_LIST_BYTES * 4 + 1)
    statuses = StatusList(size=10)
    with pytest.raises(StatusListError, match="outside the status list"):
        statuses.set(10, StatusType.INVALID)
    with pytest.raises(StatusListError, match="outside"):
        status_of(statuses, -1)
    with pytest.raises(TypeError):
        statuses.set(1, 1)  # type: ignore[arg-type]
    with pytest.raises(StatusListError, match="does not fit"):
        StatusList(size=8, bits=1).set(0, StatusType.SUSPENDED)


# --- index allocation --------------------------------------------------------------------


def test_allocated_indexes_are_random_and_free() -> None:
    used: set[int] = set()
    order = []
    for _ in range(200):
        idx = allocate_index(used, 1 << 17)
        assert 0 <= idx < 1 << 17 and idx not in used
        used.add(idx)
        order.append(idx)
    # Sequential allocation would give 0, 1, 2, ...; random allocation almost never
    # yields even a handful of consecutive neighbours.
    neighbours = sum(1 for a, b in itertools.pairwise(order) if b == a + 1)
    assert neighbours < 3
    assert order != sorted(order)


def test_allocation_finds_the_last_free_index_and_then_refuses() -> None:
    used = set(range(1000)) - {613}
    assert allocate_index(used, 1000) == 613
    with pytest.raises(StatusListFullError, match="start a new list"):
        allocate_index(set(range(1000)), 1000)


# --- the signed list -------------------------------------------------------------------------


def test_status_list_jwt_round_trip(signer, now) -> None:
    statuses = StatusList(size=1 << 17)
    statuses.set(42, StatusType.INVALID)
    statuses.set(77, StatusType.SUSPENDED)
    token = encode(signer, statuses, now)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header["typ"] == "statuslist+jwt" and header["alg"] == "ES256"
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert claims["sub"] == URI and claims["iss"] == ISSUER and claims["ttl"] == 3600
    assert claims["status_list"]["bits"] == 2
    # 131072 licences in 2 bits is 32 KiB; two revocations compress to a few dozen bytes.
    assert len(claims["status_list"]["lst"]) < 100
    verified = decode(signer, token, now, expected_issuer=ISSUER)
    assert verified.status_list.size == 1 << 17 and verified.status_list.bits == 2
    assert verified.status_of(42) is StatusType.INVALID
    assert verified.status_of(77) is StatusType.SUSPENDED
    assert verified.status_of(43) is StatusType.VALID
    assert verified.issued_at == now and verified.expires_at == now + dt.timedelta(
        days=1
    )
    assert verified.refresh_at == now + dt.timedelta(hours=1)
    assert verified.signer.certificate == signer.certificate and verified.uri == URI


def test_a_list_for_another_uri_or_issuer_is_refused(signer, now) -> None:
    token = encode(signer, StatusList(size=64), now)
    with pytest.raises(InvalidStatusListError, match="another list"):
        decode(signer, token, now, expected_uri=URI + "0")
    with pytest.raises(InvalidStatusListError, match="another issuer"):
        decode(signer, token, now, expected_issuer="https://other.example")


def test_tampered_untrusted_and_unsigned_lists_are_refused(signer, now) -> None:
    token = encode(signer, StatusList(size=64), now)
    header, payload, signature = token.split(".")
    cleared = json.loads(b64url_decode(payload))
    cleared["status_list"]["lst"] = b64url_encode(StatusList(size=64).compressed())
    cleared["ttl"] = 7200
    with pytest.raises(InvalidStatusListError, match="does not verify"):
        decode(
            signer,
            f"{header}.{b64url_encode(json.dumps(cleared).encode())}.{signature}",
            now,
        )
    with pytest.raises(InvalidStatusListError, match="not a trusted document signer"):
        decode_and_verify_status_list(
            token, trust=SignerList([]), now=now, expected_uri=URI
        )
    unsigned = f"{b64url_encode(json.dumps({'alg': 'none', 'typ': 'statuslist+jwt'}).encode())}.{payload}."
    with pytest.raises(InvalidStatusListError, match="not ES256"):
        decode(signer, unsigned, now)
    with pytest.raises(InvalidStatusListError, match="typ is not statuslist"):
        decode(
            signer,
            signed_claims(signer, list_claims(now, zlib.compress(b"\0")), typ="JWT"),
            now,
        )


def test_expired_and_future_lists_are_refused(signer, now) -> None:
    token = encode(signer, StatusList(size=64), now)
    with pytest.raises(InvalidStatusListError, match="expired"):
        decode(signer, token, now + dt.timedelta(days=2))
    with pytest.raises(InvalidStatusListError, match="future"):
        decode(signer, token, now - dt.timedelta(hours=1))


def test_a_zlib_bomb_is_refused_without_inflating_it(signer, now) -> None:
    # 64 MiB of zeros deflate to about 64 KiB: a small token that would eat memory.
    compressor = zlib.compressobj(9)
    bomb = (
        b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64))
        + compressor.flush()
    )
    assert len(bomb) < 100_000
    token = signed_claims(signer, list_claims(now, bomb))
    with pytest.raises(InvalidStatusListError, match="more than allowed"):
        decode(signer, token, now)
    with pytest.raises(InvalidStatusListError, match="more than allowed"):
        decode(
            signer,
            signed_claims(signer, list_claims(now, zlib.compress(bytes(4096)))),
            now,
            max_bytes=1024,
        )


@pytest.mark.parametrize(
    ("status_list", "words"),
    [
        ({"bits": 3, "lst": b64url_encode(zlib.compress(b"\0"))}, "1, 2, 4 or 8"),
        ({"bits": True, "lst": b64url_encode(zlib.compress(b"\0"))}, "1, 2, 4 or 8"),
        # 2.0 == 2: it passed the check and then failed as a StatusListError about
        # the list's size, not InvalidStatusListError saying what is wrong.
        ({"bits": 2.0, "lst": b64url_encode(zlib.compress(b"\0"))}, "1, 2, 4 or 8"),
        ({"bits": 1}, "lst is not a string"),
        ({"bits": 1, "lst": "not base64!"}, "not base64url"),
        ({"bits": 1, "lst": b64url_encode(b"plain bytes")}, "not ZLIB"),
        (
            {"bits": 1, "lst": b64url_encode(zlib.compress(bytes(100))[:-3])},
            "truncated",
        ),
        (
            {"bits": 1, "lst": b64url_encode(zlib.compress(bytes(100)) + b"junk")},
            "after the ZLIB",
        ),
        ({"bits": 1, "lst": b64url_encode(zlib.compress(b""))}, "empty"),
        (["bits", "lst"], "no status_list object"),
    ],
)
def test_malformed_status_lists_are_refused(signer, now, status_list, words) -> None:
    claims = list_claims(now, b"")
    claims["status_list"] = status_list
    with pytest.raises(InvalidStatusListError, match=words):
        decode(signer, signed_claims(signer, claims), now)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"iat": None}, "no iat"),
        ({"iat": "yesterday"}, "not a NumericDate"),
        ({"exp": 10**20}, "out of range"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": "3600"}, "ttl"),
        # iat + ttl past the year 9999: refresh_at raised OverflowError, out of the
        # verifier's cache (which catches ValueError and LicenseError only).
        ({"ttl": 2**63}, "ttl"),
        ({"ttl": 10**12}, "ttl"),
        ({"iss": 12}, "iss"),
    ],
)
def test_malformed_status_list_claims_are_refused(signer, now, claims, words) -> None:
    payload = {
        k: v
        for k, v in list_claims(now, zlib.compress(b"\0"), **claims).items()
        if v is not None
    }
    with pytest.raises(InvalidStatusListError, match=words):
        decode(signer, signed_claims(signer, payload), now).refresh_at  # noqa: B018


def test_bad_encode_requests_are_refused(signer, now) -> None:
    with pytest.raises(StatusListError, match="URI"):
        encode(signer, StatusList(size=8), now, uri="")
    with pytest.raises(StatusListError, match="ttl"):
        encode(signer, StatusList(size=8), now, ttl=-5)
    with pytest.raises(StatusListError, match="expire after"):
        encode(signer, StatusList(size=8), now, exp=now)
    with pytest.raises(ValueError, match="aware"):
        encode(signer, StatusList(size=8), now, iat=now.replace(tzinfo=None))


# --- with the SD-JWT VC ------------------------------------------------------------------------


def test_revoking_suspending_and_reinstating_a_presented_licence(signer, now) -> None:
    used: set[int] = set()
    idx = allocate_index(used, 1 << 17)
    credential = issue_sd_jwt(
        {"identifier": "1.2.156.3005.2.x", "name": "福州某某科技有限公司"},
        disclosable={"name"},
        always={"identifier"},
        vct="urn:yinxin:licence:test",
        issuer=ISSUER,
        iat=now,
        exp=now + dt.timedelta(days=30),
        status={"idx": idx, "uri": URI},
        signer_key=signer.key,
        signer_certificate=signer.certificate,
    )
    shown = present(credential, disclose=["name"])
    statuses = StatusList(size=1 << 17)

    def check() -> Verdict:
        token = encode(signer, statuses, now)

        def lookup(reference) -> int:
            return decode(signer, token, now, expected_uri=reference.uri).status_of(
                reference.index
            )

        return verify_presentation(
            shown, trust=signer.trust, now=now, status_lookup=lookup
        ).verdict

    assert check() is Verdict.VALID
    statuses.set(idx, StatusType.SUSPENDED)
    assert check() is Verdict.SUSPENDED
    statuses.set(idx, StatusType.VALID)
    assert check() is Verdict.VALID
    statuses.set(idx, StatusType.INVALID)
    assert check() is Verdict.REVOKED


def test_hand_signed_list_by_a_foreign_key_with_the_signer_s_kid_is_refused(
    signer, now
) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    header = {
        "alg": "ES256",
        "typ": "statuslist+jwt",
        "kid": b64url_encode(signer_kid(signer.certificate)),
    }
    signing_input = (
        f"{b64url_encode(json.dumps(header).encode())}."
        f"{b64url_encode(json.dumps(list_claims(now, zlib.compress(bytes(8)))).encode())}"
    )
    r, s = decode_dss_signature(
        forger.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    token = f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    with pytest.raises(InvalidStatusListError, match="does not verify"):
        decode(signer, token, now)


def test_a_list_signed_outside_the_signer_s_trust_is_refused(signer, now) -> None:
    token = encode(signer, StatusList(size=64), now)
    other_region = SignerList(
        [TrustedSigner(signer.certificate, issuer="https://other.example")]
    )
    with pytest.raises(InvalidStatusListError, match="not trusted for its issuer"):
        decode_and_verify_status_list(
            token, trust=other_region, now=now, expected_uri=URI
        )
    withdrawn = SignerList(
        [TrustedSigner(signer.certificate, not_after=now - dt.timedelta(seconds=1))]
    )
    with pytest.raises(InvalidStatusListError, match="not valid when it was issued"):
        decode_and_verify_status_list(token, trust=withdrawn, now=now, expected_uri=URI)


@pytest.mark.parametrize("form", ["jwt", "cwt"])
def test_a_list_is_refused_once_its_signer_is_no_longer_trusted(
    signer, now, form: str
) -> None:
    """A list signed while its signer was trusted is not used after that trust ends
    (the trust list withdrew the key, or its certificate expired): otherwise the
    withdrawn key could sign lists with an iat inside its old window and no exp (or
    a far one) saying VALID for every licence revoked since."""
    trusted_for_an_hour = SignerList(
        [TrustedSigner(signer.certificate, not_after=now + dt.timedelta(hours=1))]
    )
    later = now + dt.timedelta(hours=2)
    if form == "jwt":
        jwt = encode(signer, StatusList(size=64), now, exp=None)
        verify = lambda at: decode_and_verify_status_list(  # noqa: E731
            jwt, trust=trusted_for_an_hour, now=at, expected_uri=URI
        )
    else:
        cwt = encode_status_list_cwt(
            StatusList(size=64),
            uri=URI,
            iat=now,
            exp=now + dt.timedelta(days=1),
            ttl=None,
            signer_key=signer.key,
            signer_certificate=signer.certificate,
            issuer=ISSUER,
        )
        verify = lambda at: decode_and_verify_status_list_cwt(  # noqa: E731
            cwt, trust=trusted_for_an_hour, now=at, expected_uri=URI
        )
    assert verify(now).issued_at == now
    with pytest.raises(InvalidStatusListError, match="no longer"):
        verify(later)


# --- the CWT form ------------------------------------------------------------------------


def encode_cwt(signer: DocumentSigner, statuses: StatusList, now: dt.datetime) -> bytes:
    return encode_status_list_cwt(
        statuses,
        uri=URI,
        iat=now,
        exp=now + dt.timedelta(days=1),
        ttl=3600,
        signer_key=signer.key,
        signer_certificate=signer.certificate,
        issuer=ISSUER,
    )


def raw_cwt(
    key: Any,
    claims: Mapping[int, Any],
    *,
    kid: bytes,
    typ: str = "application/statuslist+cwt",
    alg: int = ALG_ES256,
) -> bytes:
    protected = encode_cbor({1: alg, 4: kid, 16: typ})
    body = encode_cbor(dict(claims))
    der = key.sign(sig_structure(protected, body), ec.ECDSA(hashes.SHA256()))
    return assemble_sign1(protected, body, der_to_raw_ecdsa(der))


def cwt_claims(now: dt.datetime, lst: bytes, **overrides: Any) -> dict[int, Any]:
    claims = {
        2: URI,
        6: int(now.timestamp()),
        4: int((now + dt.timedelta(hours=1)).timestamp()),
        65533: {"bits": 2, "lst": lst},
    }
    claims.update({int(k.removeprefix("k")): v for k, v in overrides.items()})
    return claims


def test_status_list_cwt_round_trip(signer, now) -> None:
    statuses = StatusList(size=1 << 17)
    statuses.set(9, StatusType.SUSPENDED)
    token = encode_cwt(signer, statuses, now)
    message = parse_sign1(token, limits=CborLimits(max_bytes=1 << 20))
    assert message.protected[16] == "application/statuslist+cwt"
    assert message.kid == signer_kid(signer.certificate)
    claims = decode_cbor(message.payload)
    assert (claims[2], claims[1], claims[65534]) == (URI, ISSUER, 3600)
    assert claims[65533]["bits"] == 2 and isinstance(claims[65533]["lst"], bytes)
    # The CBOR form carries no base64 and no certificate: a few hundred bytes here.
    assert len(token) < 400
    verified = decode_and_verify_status_list_cwt(
        token, trust=signer.trust, now=now, expected_uri=URI, expected_issuer=ISSUER
    )
    assert verified.status_of(9) is StatusType.SUSPENDED
    assert verified.status_of(10) is StatusType.VALID
    assert verified.refresh_at == now + dt.timedelta(hours=1)


def test_hostile_status_list_cwts_are_refused(signer, now) -> None:
    kid = signer_kid(signer.certificate)
    good_lst = zlib.compress(bytes(16))

    def refused(token: bytes, words: str, **options: Any) -> None:
        options.setdefault("expected_uri", URI)
        with pytest.raises(InvalidStatusListError, match=words):
            decode_and_verify_status_list_cwt(
                token, trust=signer.trust, now=now, **options
            )

    token = encode_cwt(signer, StatusList(size=64), now)
    refused(token, "another list", expected_uri=URI + "0")
    refused(token[:-1] + bytes([token[-1] ^ 1]), "does not verify")
    refused(b"\x00garbage", "status list CWT")
    forger = ec.generate_private_key(ec.SECP256R1())
    refused(raw_cwt(forger, cwt_claims(now, good_lst), kid=kid), "does not verify")
    refused(
        raw_cwt(forger, cwt_claims(now, good_lst), kid=b"12345678"), "not a trusted"
    )
    refused(
        raw_cwt(signer.key, cwt_claims(now, good_lst), kid=kid, typ="application/cwt"),
        "type",
    )
    compressor = zlib.compressobj(9)
    bomb = (
        b"".join(compressor.compress(bytes(1 << 20)) for _ in range(16))
        + compressor.flush()
    )
    refused(raw_cwt(signer.key, cwt_claims(now, bomb), kid=kid), "more than allowed")
    refused(raw_cwt(signer.key, cwt_claims(now, "text"), kid=kid), "not a byte string")
    refused(raw_cwt(signer.key, cwt_claims(now, good_lst, k6=None), kid=kid), "no iat")
    expired = cwt_claims(
        now, good_lst, k4=int((now - dt.timedelta(hours=1)).timestamp())
    )
    refused(raw_cwt(signer.key, expired, kid=kid), "expired")
    with pytest.raises(TypeError):
        decode_and_verify_status_list_cwt(
            "text", trust=signer.trust, now=now, expected_uri=URI
        )  # type: ignore[arg-type]


def _empty_arrays(count: int) -> bytes:
    """A CBOR array of `count` empty arrays: one byte each on the wire, a Python list
    of about 90 bytes each once decoded."""
    return b"\x9a" + count.to_bytes(4, "big") + b"\x80" * count


def _bstr(data: bytes) -> bytes:
    return b"\x5a" + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize("where", ["protected", "unprotected", "payload", "outer"])
def test_an_unsigned_header_cannot_make_the_verifier_build_a_huge_object(
    signer, now, where: str
) -> None:
    """Everything but the payload bytes is decoded before the signature is checked. An
    8 MiB CWT whose protected or unprotected header was a map holding 8 million empty
    arrays (or whose payload or outer array was such an array) took over 700 MB and
    seconds to be refused, from anyone who can answer a status URI. The headers are
    small and everything else a byte string; that is checked before decoding."""
    import tracemalloc

    count = 8 * 1024 * 1024 - 64
    arrays = b"\xa1\x00" + _empty_arrays(count)  # {0: [[], [], ...]}
    header = encode_cbor({1: ALG_ES256, 16: "application/statuslist+cwt"})
    parts = {
        "protected": _bstr(arrays) + b"\xa0\x40\x40",
        "unprotected": _bstr(header) + arrays + b"\x40\x40",
        "payload": _bstr(header) + b"\xa0" + _empty_arrays(count) + b"\x40",
    }
    token = (
        b"\xd2" + _empty_arrays(count)
        if where == "outer"
        else b"\xd2\x84" + parts[where]
    )
    tracemalloc.start()
    try:
        with pytest.raises(InvalidStatusListError, match="status list CWT"):
            decode_and_verify_status_list_cwt(
                token, trust=signer.trust, now=now, expected_uri=URI
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
def test_the_offline_cache_does_not_go_back_to_an_older_list(signer, now) -> None:
    """Whoever answers the status URI (a stale mirror, an attacker on the path) may
    serve an older list that is still within its exp; the cache must not replace the
    newer list it holds with it, or a revocation is undone."""
    from certs.token import StatusReference
    from certs.verify import StatusListCache

    older = encode(signer, StatusList(size=64), now)
    revoked = StatusList(size=64)
    revoked.set(5, StatusType.INVALID)
    signed_later = now + dt.timedelta(hours=2)
    newer = encode(signer, revoked, signed_later)
    served = [newer]
    cache = StatusListCache(trust=signer.trust, fetch=lambda uri: served[0])
    reference = StatusReference(index=5, uri=URI)
    first = cache.lookup(reference, issuer=ISSUER, now=signed_later)
    assert first.status is StatusType.INVALID and first.source == "fetched"
    served[0] = older
    past_ttl = signed_later + dt.timedelta(hours=2)
    again = cache.lookup(reference, issuer=ISSUER, now=past_ttl)
    assert again.status is StatusType.INVALID
    assert again.as_of == signed_later
    with pytest.raises(InvalidStatusListError, match="older"):
        cache.add(older, uri=URI, now=past_ttl)


def test_the_offline_cache_stops_using_a_list_when_its_signer_s_trust_ends(
    signer, now
) -> None:
    from certs.token import StatusReference
    from certs.verify import StatusListCache

    trust = SignerList(
        [TrustedSigner(signer.certificate, not_after=now + dt.timedelta(hours=1))]
    )
    cache = StatusListCache(trust=trust)
    cache.add(encode(signer, StatusList(size=64), now), uri=URI, now=now)
    reference = StatusReference(index=5, uri=URI)
    assert cache.lookup(reference, issuer=ISSUER, now=now).status is StatusType.VALID
    later = cache.lookup(reference, issuer=ISSUER, now=now + dt.timedelta(hours=2))
    assert later.status is None and "status not checked" in later.reason
