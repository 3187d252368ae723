"""The seal registry: seals of every kind made with a certificate and GB/T 38540 seal
data that verify, nothing left behind by a making that fails, lifecycle transitions,
grants, the authorization matrix for stamping, and the stamp log around a real stamp.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hsm_sim.api import AuditResult, KeyAlgorithm, KeyUsage
from hsm_sim.audit import AuditEntry
from hsm_sim.errors import ErrorCategory, KeyNotFoundError
from hsm_sim.storage import utcnow
from pki.ca_models import CertificateRow, RevocationReason, ServicePurpose
from pki.errors import AgencyNotFoundError, InvalidUsccError
from pki.models import StaffRole
from pki.oids import ProjectOID, StandardOID
from pki.registry import (
    add_api_client,
    add_staff_user,
    disable_api_client,
    register_agency,
)
from pki.timestamping import service_credential
from seal.errors import (
    GrantNotFoundError,
    PrincipalNotFoundError,
    SealNotFoundError,
    SealNotUsableError,
    SealRequestError,
    SealStateError,
    StampError,
    StampForbiddenError,
)
from seal.image import SealImageError, SealKind
from seal.lifecycle import (
    CHINA_STANDARD_TIME,
    KEY_LABEL_PREFIX,
    SEAL_TYPE_ORGANISATION,
    SEAL_TYPE_PERSONAL,
    SEAL_VENDOR_ID,
    SealRecord,
    SealRegistry,
    SealRequest,
    SealStatus,
    StampAuthorization,
    describe_seal_record,
)
from seal.models import SealCodeSequenceRow, SealRow, StampLogRow, StampOutcome
from seal.sesdata import parse_seal, verify_seal
from seal.signer import SEAL_DATA_ATTRIBUTE_OID
from seal.stamping import At, Level, Stamper, StampRequest
from tests.helpers.node import (
    AGENCY_NAME,
    AGENCY_USCC,
    DESTROY_KEY,
    GENERATE_KEY,
    Node,
    build_node,
)
from tests.seal.conftest import validate_all

OTHER_NAME = "荥阳市司法局"
OTHER_USCC = "11410182005291054B"
OTHER_REGION = "410182"
PASSWORD = "correct horse battery staple"
B_B = StampRequest(placements=(At(page=1, x_mm=150, y_mm=240),), level=Level.B_B)
BEFORE_END_OF_2027 = dt.date(2027, 12, 31)
UNREGISTERED_USCC = "91350100MA2Y8BYX2A"
LONG_NAME_USCC = "12350100MB00000035"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("seal-lifecycle") / "node")
    with node.sessions.begin() as session:
        register_agency(session, name=OTHER_NAME, uscc=OTHER_USCC, region=OTHER_REGION)
    yield node
    node.close()


@pytest.fixture(scope="module")
def trust_root(node: Node) -> asn1_x509.Certificate:
    root = node.ca.issuer("root").certificate
    return asn1_x509.Certificate.load(root.public_bytes(Encoding.DER))


@pytest.fixture(scope="module")
def seals(node: Node) -> SealRegistry:
    return SealRegistry(ra=node.ra, revocation=node.revocation)


@pytest.fixture(scope="module")
def principals(node: Node) -> dict[str, str]:
    """API clients and staff of both agencies: name -> client id or username."""
    with node.sessions.begin() as session:
        own, _ = add_api_client(
            session, agency_uscc=AGENCY_USCC, name="document-system"
        )
        own_other, _ = add_api_client(session, agency_uscc=AGENCY_USCC, name="archive")
        foreign, _ = add_api_client(
            session, agency_uscc=OTHER_USCC, name="justice-system"
        )
        disabled, _ = add_api_client(session, agency_uscc=AGENCY_USCC, name="retired")
        add_staff_user(
            session,
            username="clerk",
            password=PASSWORD,
            role=StaffRole.AGENCY_CLERK,
            agency_uscc=AGENCY_USCC,
        )
        add_staff_user(
            session,
            username="foreign-clerk",
            password=PASSWORD,
            role=StaffRole.AGENCY_CLERK,
            agency_uscc=OTHER_USCC,
        )
        add_staff_user(
            session, username="operator", password=PASSWORD, role=StaffRole.OPERATOR
        )
    return {
        "client": own.client_id,
        "other-client": own_other.client_id,
        "foreign-client": foreign.client_id,
        "disabled-client": disabled.client_id,
    }


def _make(
    seals: SealRegistry, kind: SealKind = SealKind.CONTRACT, **kwargs: object
) -> SealRecord:
    fields: dict[str, object] = {"agency_uscc": AGENCY_USCC, "kind": kind}
    if kind is SealKind.LEGAL_REP:
        fields["name"] = "张三"
    fields.update(kwargs)
    return seals.make_seal(SealRequest(**fields))  # type: ignore[arg-type]


def _at(seals: SealRegistry, offset: dt.timedelta) -> SealRegistry:
    """The same registry, its clock moved by `offset`."""
    return SealRegistry(
        ra=seals.ra, revocation=seals.revocation, clock=lambda: utcnow() + offset
    )


def _certificate_row(node: Node, seal: SealRecord) -> CertificateRow:
    with node.sessions() as session:
        row = session.scalar(
            select(CertificateRow).where(
                CertificateRow.serial == seal.certificate_serial
            )
        )
    assert row is not None
    return row


def _count(node: Node, model: type) -> int:
    with node.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _seal_key_labels(node: Node) -> set[str]:
    return {
        k.label
        for k in node.keystore.list_keys()
        if k.label.startswith(KEY_LABEL_PREFIX)
    }


def _snapshot(node: Node) -> tuple[object, ...]:
    """What making a seal adds: keys, certificates, seal rows, code counters."""
    with node.sessions() as session:
        counters = tuple(
            session.execute(
                select(
                    SealCodeSequenceRow.region_code, SealCodeSequenceRow.last_sequence
                ).order_by(SealCodeSequenceRow.region_code)
            ).all()
        )
    return (
        _seal_key_labels(node),
        len(node.certificate_rows()),
        _count(node, SealRow),
        counters,
    )


# -- making ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SealKind), ids=[k.value for k in SealKind])
def test_each_kind_of_seal_is_made_with_certificate_and_verifying_seal_data(
    node, seals, kind
):
    seal = _make(seals, kind, valid_until=BEFORE_END_OF_2027)

    assert seal.status is SealStatus.ACTIVE and seal.usable
    assert seal.kind is kind and seal.agency_uscc == AGENCY_USCC
    expected_name = {
        SealKind.OFFICIAL: AGENCY_NAME,
        SealKind.LEGAL_REP: f"{AGENCY_NAME}法定代表人章（张三）",
    }.get(kind, AGENCY_NAME + kind.label)
    assert seal.name == expected_name
    assert seal.person_name == ("张三" if kind is SealKind.LEGAL_REP else None)
    assert (
        seal.es_id.startswith("350100")
        and len(seal.es_id) == 13
        and seal.es_id.isdigit()
    )
    end_of_day = dt.datetime(2027, 12, 31, 23, 59, 59, tzinfo=CHINA_STANDARD_TIME)
    assert seal.valid_until == end_of_day

    # The certificate: seal profile, for the agency, named after the seal, key in the HSM.
    row = _certificate_row(node, seal)
    assert row.profile == "seal" and row.key_label == seal.key_label
    certificate = x509.load_der_x509_certificate(row.der)
    subject = certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == expected_name
    assert (
        subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == AGENCY_NAME
    )
    assert (
        subject.get_attributes_for_oid(StandardOID.ORGANIZATION_IDENTIFIER)[0].value
        == f"NTRCN-{AGENCY_USCC}"
    )
    policies = certificate.extensions.get_extension_for_class(
        x509.CertificatePolicies
    ).value
    assert [p.policy_identifier for p in policies] == [ProjectOID.SEAL_POLICY]
    assert certificate.not_valid_after_utc >= end_of_day
    assert node.keystore.key_info(seal.key_label).usages == frozenset({KeyUsage.SEAL})
    assert node.keystore.public_key(seal.key_label) == certificate.public_key()

    # The seal data: made by the region's seal maker, listing the seal certificate.
    data = parse_seal(seals.seal_data(seal.id))
    check = verify_seal(data)
    assert check.maker_signature_ok, check.reason
    _label, maker_certificate, _chain = service_credential(
        node.ca, ServicePurpose.SEAL_MAKER
    )
    assert data.maker_certificate == maker_certificate.public_bytes(Encoding.DER)
    info = data.info
    assert info.version == 4 and info.vendor_id == SEAL_VENDOR_ID
    assert info.es_id == seal.es_id and info.name == expected_name
    assert info.seal_type == (
        SEAL_TYPE_PERSONAL if kind is SealKind.LEGAL_REP else SEAL_TYPE_ORGANISATION
    )
    assert info.certificates == (row.der,)
    assert (info.valid_start, info.valid_end) == (seal.valid_from, seal.valid_until)
    picture = info.picture
    assert picture.image_type == "PNG" and picture.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (picture.width_mm, picture.height_mm) == tuple(
        round(v) for v in seal.size_mm
    )

    # The images: a one-page vector PDF the seal's size, an RGBA PNG preview.
    pdf = seals.export_image(seal.es_id, "pdf")
    page = PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Kids"][0].get_object()
    _x0, _y0, width_pt, height_pt = (float(v) for v in page["/MediaBox"])
    assert (round(width_pt / 72 * 25.4), round(height_pt / 72 * 25.4)) == tuple(
        round(v) for v in seal.size_mm
    )
    preview = Image.open(io.BytesIO(seals.export_image(seal.id, "png")))
    assert preview.mode == "RGBA" and preview.size[0] == round(
        seal.size_mm[0] / 25.4 * 300
    )


def test_seal_codes_count_per_region_and_never_repeat(seals):
    first = _make(seals, SealKind.FINANCE)
    second = _make(seals, SealKind.FINANCE)
    elsewhere = _make(seals, SealKind.OFFICIAL, agency_uscc=OTHER_USCC)

    assert int(second.es_id) == int(first.es_id) + 1
    assert elsewhere.es_id.startswith(OTHER_REGION) and elsewhere.name == OTHER_NAME
    codes = [s.es_id for s in seals.list_seals()]
    assert len(codes) == len(set(codes))
    assert [s.id for s in seals.list_seals(OTHER_USCC)] == [elsewhere.id]
    assert seals.get_seal(second.es_id).id == seals.get_seal(second.id).id == second.id


def test_validity_defaults_to_the_profile_and_is_capped_by_it(node, seals):
    profile = node.ca.profile("seal")
    default = _make(seals, SealKind.INVOICE)
    assert (
        default.valid_until
        == x509.load_der_x509_certificate(
            _certificate_row(node, default).der
        ).not_valid_after_utc
    )
    assert default.valid_until - default.valid_from == pytest.approx(
        profile.default_validity - dt.timedelta(minutes=5), abs=dt.timedelta(minutes=1)
    )

    far = _make(
        seals,
        SealKind.INVOICE,
        valid_until=dt.date.today() + dt.timedelta(days=20 * 365),
    )
    capped = x509.load_der_x509_certificate(
        _certificate_row(node, far).der
    ).not_valid_after_utc
    assert far.valid_until == capped
    assert far.valid_until - far.valid_from <= profile.max_validity


@pytest.mark.parametrize(
    ("kind", "changes", "error", "words"),
    [
        (SealKind.LEGAL_REP, {"name": None}, SealRequestError, "person's name"),
        (SealKind.LEGAL_REP, {"name": "张3"}, SealRequestError, "2 to 9 letters"),
        (
            SealKind.LEGAL_REP,
            {"name": "阿依古丽·买买提·艾力江"},
            SealRequestError,
            "2 to 9 letters",
        ),
        (
            SealKind.LEGAL_REP,
            {"name": AGENCY_NAME},
            SealRequestError,
            "not the agency's",
        ),
        (SealKind.CONTRACT, {"name": "别的单位"}, SealRequestError, "registered name"),
        ("seal-of-approval", {}, SealRequestError, "unknown seal type"),
        (
            SealKind.OFFICIAL,
            {"agency_uscc": "91350100M000100Y44"},
            InvalidUsccError,
            "check",
        ),
        (
            SealKind.OFFICIAL,
            {"agency_uscc": UNREGISTERED_USCC},
            AgencyNotFoundError,
            "no agency",
        ),
        (
            SealKind.OFFICIAL,
            {"valid_until": dt.date(2020, 1, 1)},
            SealRequestError,
            "in the future",
        ),
        (
            SealKind.OFFICIAL,
            {"valid_until": dt.datetime(2030, 1, 1)},
            SealRequestError,
            "aware datetime",
        ),
    ],
    ids=[
        "legal-rep-without-name",
        "legal-rep-digit",
        "legal-rep-too-long",
        "legal-rep-agency-name",
        "contract-other-name",
        "unknown-kind",
        "bad-uscc",
        "unknown-agency",
        "validity-in-the-past",
        "naive-validity",
    ],
)
def test_bad_requests_are_refused_before_anything_is_made(
    node, seals, kind, changes, error, words
):
    before = _snapshot(node)
    with pytest.raises(error) as caught:
        _make(seals, kind, **changes)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert caught.value.category is not ErrorCategory.INTERNAL  # type: ignore[attr-defined]
    assert _snapshot(node) == before


def test_a_name_too_long_for_the_seal_is_refused_by_the_image(node, seals):
    long_name = "某某省某某市某某区人民政府办公室关于某某某某某某某某某某事项的专项工作领导小组办公室"
    with node.sessions.begin() as session:
        register_agency(session, name=long_name, uscc=LONG_NAME_USCC, region="350100")
    before = _snapshot(node)
    with pytest.raises(SealImageError) as caught:
        _make(seals, SealKind.OFFICIAL, agency_uscc=LONG_NAME_USCC)
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert _snapshot(node) == before


def test_a_seal_name_longer_than_a_common_name_is_shortened_in_the_certificate(node, seals):
    # 26 characters, 77 bytes of UTF-8: more than the 64 bytes a commonName may hold.
    seal = _make(seals, SealKind.LEGAL_REP, name="阿依古丽·买买提")
    certificate = x509.load_der_x509_certificate(_certificate_row(node, seal).der)
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(common_name.encode("utf-8")) <= 64
    assert common_name.endswith("法定代表人章（阿依古丽·买买提）")
    assert "…" in common_name


def _entries(node: Node, key_label: str) -> list[AuditEntry]:
    with node.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.key_label == key_label)
                .order_by(AuditEntry.seq)
            )
        )


@pytest.mark.parametrize("where", ["seal-data", "storing", "committing"])
def test_a_failure_after_the_certificate_leaves_nothing_usable(
    node, seals, monkeypatch, where
):
    """On SQLite: the key is destroyed after the failed write transaction has ended
    (its audit entry needs the database's write lock, so it could not be written
    inside one), the key store names who made the seal and why."""
    assert node.database_url.startswith("sqlite:")
    taken = _make(seals, SealKind.CONTRACT).es_id if where == "committing" else None
    labels_before = _seal_key_labels(node)
    certificates_before = {r.id for r in node.certificate_rows()}
    seals_before = _count(node, SealRow)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"injected failure while {where}")

    if where == "committing":
        # The seal code of another seal: the unique constraint fails when stored.
        monkeypatch.setattr(seals, "_next_seal_code", lambda region: taken)
        expected: type[Exception] = IntegrityError
    else:
        monkeypatch.setattr(
            "seal.lifecycle." + ("build_seal" if where == "seal-data" else "SealRow"),
            fail,
        )
        expected = RuntimeError
    with pytest.raises(expected):
        seals.make_seal(
            SealRequest(agency_uscc=AGENCY_USCC, kind=SealKind.CONTRACT),
            actor="staff:maker",
        )

    (certificate,) = [
        r for r in node.certificate_rows() if r.id not in certificates_before
    ]
    assert certificate.profile == "seal" and certificate.der is not None
    assert certificate.revocation_reason is RevocationReason.CESSATION_OF_OPERATION
    with pytest.raises(KeyNotFoundError):
        node.keystore.key_info(certificate.key_label)  # type: ignore[arg-type]
    # The key made for the seal and destroyed again signed nothing, and the audit log
    # shows both.
    assert node.audit_trail(key_label=certificate.key_label) == [
        (GENERATE_KEY, certificate.key_label, AuditResult.GRANTED),
        (DESTROY_KEY, certificate.key_label, AuditResult.GRANTED),
    ]
    assert {e.actor for e in _entries(node, certificate.key_label)} == {"staff:maker"}
    assert node.verify_audit().ok
    assert _seal_key_labels(node) == labels_before
    assert _count(node, SealRow) == seals_before


def test_what_a_killed_making_left_is_discarded_later(node, seals):
    live = _make(seals, SealKind.OFFICIAL)
    orphan = KEY_LABEL_PREFIX + "sl_killedafterissue"
    bare = KEY_LABEL_PREFIX + "sl_killedbeforeissue"
    issued = node.ra.issue_with_new_key(
        profile_name="seal", key_label=orphan, agency_uscc=AGENCY_USCC
    )
    node.keystore.generate_key(bare, KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    assert seals.discard_unfinished() == []  # too young: a making may be under way
    discarded = _at(seals, dt.timedelta(hours=2)).discard_unfinished()

    assert {orphan, bare} <= set(discarded) and live.key_label not in discarded
    # On SQLite the destructions are audited: none was tried inside a transaction.
    assert node.database_url.startswith("sqlite:")
    for label in (orphan, bare):
        assert node.audit_trail(key_label=label) == [
            (GENERATE_KEY, label, AuditResult.GRANTED),
            (DESTROY_KEY, label, AuditResult.GRANTED),
        ]
    assert orphan not in _seal_key_labels(node) and bare not in _seal_key_labels(node)
    assert live.key_label in _seal_key_labels(node)
    (row,) = [r for r in node.certificate_rows() if r.serial == issued.serial]
    assert row.revocation_reason is RevocationReason.CESSATION_OF_OPERATION
    assert seals.get_seal(live.id).status is SealStatus.ACTIVE


# -- lifecycle -------------------------------------------------------------------------


def test_suspend_and_reinstate(node, seals):
    seal = _make(seals)
    suspended = seals.suspend_seal(seal.id, note="印章 under review\nby the office")
    assert suspended.status is SealStatus.SUSPENDED
    assert suspended.suspension_note == "印章 under review by the office"
    assert "suspended since" in suspended.status_reason
    # The certificate is untouched: documents stamped before stay valid for verifiers.
    assert _certificate_row(node, seal).revoked_at is None
    again = seals.suspend_seal(seal.id)
    assert (
        again.suspended_at == suspended.suspended_at
        and again.suspension_note == suspended.suspension_note
    )

    reinstated = seals.reinstate_seal(seal.es_id)
    assert reinstated.status is SealStatus.ACTIVE and reinstated.suspended_at is None
    assert seals.reinstate_seal(seal.id).status is SealStatus.ACTIVE


def test_revoke_revokes_the_certificate_and_destroys_the_key(node, seals):
    seal = _make(seals)
    audit_before = node.audit_entry_count()
    revoked = seals.revoke_seal(seal.id, "superseded", actor="staff:wang")
    assert revoked.status is SealStatus.REVOKED
    assert (
        revoked.revocation_reason is RevocationReason.SUPERSEDED
        and revoked.revoked_at is not None
    )
    row = _certificate_row(node, seal)
    assert (
        row.revocation_reason is RevocationReason.SUPERSEDED
        and row.revoked_at is not None
    )
    with pytest.raises(KeyNotFoundError):
        node.keystore.key_info(seal.key_label)
    # The destruction is on record, written before the key was gone, with who revoked
    # the seal and why; so are the revocation data signed for it.
    assert node.audit_trail(after=audit_before, key_label=seal.key_label) == [
        (DESTROY_KEY, seal.key_label, AuditResult.GRANTED)
    ]
    (destroyed,) = _entries(node, seal.key_label)[-1:]
    assert destroyed.actor == "staff:wang"
    assert f"revoke-seal:{seal.es_id}" in destroyed.detail
    with node.sessions() as session:
        signed_for_it = session.scalars(
            select(AuditEntry.actor).where(
                AuditEntry.seq > audit_before,
                AuditEntry.key_label != seal.key_label,
            )
        ).all()
    assert signed_for_it and set(signed_for_it) == {"staff:wang"}
    assert node.verify_audit().ok

    # Revoking again leaves the gone key alone: no destroy-key entry, granted or failed.
    audit_before = node.audit_entry_count()
    again = seals.revoke_seal(
        seal.id, RevocationReason.KEY_COMPROMISE, actor="staff:wang"
    )
    assert node.audit_trail(after=audit_before, key_label=seal.key_label) == []
    assert (
        again.revocation_reason is RevocationReason.SUPERSEDED
        and again.revoked_at == revoked.revoked_at
    )
    for change in (seals.suspend_seal, seals.reinstate_seal):
        with pytest.raises(SealStateError, match="revoked") as caught:
            change(seal.id)
        assert caught.value.category is ErrorCategory.CONFLICT
    assert (
        describe_seal_record(seals.get_seal(seal.id))["revocation_reason"]
        == "superseded"
    )


@pytest.mark.parametrize(
    "reason", ["certificateHold", "cACompromise", "no-such-reason"]
)
def test_revoke_refuses_reasons_that_do_not_fit_a_seal(seals, reason):
    seal = _make(seals, SealKind.LEGAL_REP)
    with pytest.raises(SealRequestError):
        seals.revoke_seal(seal.id, reason)
    assert seals.get_seal(seal.id).status is SealStatus.ACTIVE


def test_expiry_follows_the_clock(seals):
    seal = _make(seals, valid_until=dt.date.today() + dt.timedelta(days=2))
    later = _at(seals, dt.timedelta(days=3))
    expired = later.get_seal(seal.id)
    assert (
        expired.status is SealStatus.EXPIRED and "expired on" in expired.status_reason
    )
    assert [s.id for s in later.list_seals(status=SealStatus.EXPIRED)].count(
        seal.id
    ) == 1
    for change in (later.suspend_seal, later.reinstate_seal):
        with pytest.raises(SealStateError, match="expired"):
            change(seal.id)
    assert seals.get_seal(seal.id).status is SealStatus.ACTIVE


def test_the_certificate_status_at_the_ca_counts(node, seals):
    held = _make(seals)
    node.revocation.revoke(held.certificate_serial, RevocationReason.CERTIFICATE_HOLD)
    assert seals.get_seal(held.id).status is SealStatus.SUSPENDED
    node.revocation.release_hold(held.certificate_serial)
    assert seals.get_seal(held.id).status is SealStatus.ACTIVE

    compromised = _make(seals)
    node.revocation.revoke(
        compromised.certificate_serial, RevocationReason.KEY_COMPROMISE
    )
    record = seals.get_seal(compromised.id)
    assert (
        record.status is SealStatus.REVOKED and "keyCompromise" in record.status_reason
    )


def test_unknown_seals_and_formats(seals):
    with pytest.raises(SealNotFoundError) as caught:
        seals.get_seal("sl_0000000000000000")
    assert caught.value.category is ErrorCategory.NOT_FOUND
    with pytest.raises(SealNotFoundError):
        seals.suspend_seal("3501009999999")
    seal = _make(seals, SealKind.LEGAL_REP)
    with pytest.raises(SealRequestError, match="png or pdf"):
        seals.export_image(seal.id, "gif")


# -- grants ----------------------------------------------------------------------------


def test_grants_are_given_listed_and_withdrawn(seals, principals):
    seal = _make(seals)
    first = seals.grant(seal.id, client_id=principals["client"])
    assert (
        seals.grant(seal.id, client_id=principals["client"]).granted_at
        == first.granted_at
    )
    seals.grant(seal.id, staff_username=" Clerk ")
    assert [str(g.principal) for g in seals.list_grants(seal.id)] == [
        f"client:{principals['client']}",
        "staff:clerk",
    ]

    withdrawn = seals.withdraw_grant(seal.id, client_id=principals["client"])
    assert withdrawn.withdrawn_at is not None
    assert [str(g.principal) for g in seals.list_grants(seal.id)] == ["staff:clerk"]
    with pytest.raises(GrantNotFoundError):
        seals.withdraw_grant(seal.id, client_id=principals["client"])


@pytest.mark.parametrize(
    ("principal", "error"),
    [
        ({"client_id": "foreign-client"}, SealRequestError),
        ({"staff_username": "foreign-clerk"}, SealRequestError),
        ({"staff_username": "operator"}, SealRequestError),
        ({"client_id": "disabled-client"}, SealRequestError),
        ({"client_id": "cl_nobody"}, PrincipalNotFoundError),
        ({}, SealRequestError),
    ],
    ids=[
        "other-agency-client",
        "other-agency-staff",
        "operator",
        "disabled-client",
        "unknown-client",
        "nobody",
    ],
)
def test_grants_only_to_the_seal_agencys_own_principals(
    node, seals, principals, principal, error
):
    with node.sessions.begin() as session:
        disable_api_client(session, principals["disabled-client"])
    seal = _make(seals)
    resolved = {key: principals.get(value, value) for key, value in principal.items()}
    with pytest.raises(error):
        seals.grant(seal.id, **resolved)
    assert seals.list_grants(seal.id) == []


def test_no_grants_on_a_revoked_seal(seals, principals):
    seal = _make(seals)
    seals.revoke_seal(seal.id, "cessationOfOperation")
    with pytest.raises(SealStateError):
        seals.grant(seal.id, client_id=principals["client"])


# -- authorization ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def granted_seal(seals: SealRegistry, principals: dict[str, str]) -> SealRecord:
    """An official seal granted to the agency's first client and its clerk."""
    seal = _make(seals, SealKind.OFFICIAL)
    seals.grant(seal.id, client_id=principals["client"])
    seals.grant(seal.id, staff_username="clerk")
    return seal


@pytest.mark.parametrize(
    "principal",
    [{"client_id": "client"}, {"staff_username": "clerk"}, {"operator": "cli"}],
    ids=["granted-client", "granted-staff", "node-operator"],
)
def test_own_agency_with_grant_may_stamp(seals, principals, granted_seal, principal):
    resolved = {key: principals.get(value, value) for key, value in principal.items()}
    authorization = seals.authorize_stamp(granted_seal.id, **resolved)
    assert authorization.seal.id == granted_seal.id and authorization.seal.usable


def _refused_without_trace(node: Node, attempt: Callable[[], object]) -> Exception:
    audit_before, log_before = node.audit_entry_count(), _count(node, StampLogRow)
    with pytest.raises(StampForbiddenError) as caught:
        attempt()
    assert caught.value.category is ErrorCategory.FORBIDDEN
    assert (node.audit_entry_count(), _count(node, StampLogRow)) == (
        audit_before,
        log_before,
    )
    return caught.value


@pytest.mark.parametrize(
    ("principal", "words"),
    [
        ({"client_id": "foreign-client"}, "another agency"),
        ({"staff_username": "foreign-clerk"}, "another agency"),
        ({"staff_username": "operator"}, "another agency"),
        ({"client_id": "other-client"}, "no grant"),
        ({"client_id": "cl_nobody"}, "may not stamp"),
    ],
    ids=[
        "other-agency-client",
        "other-agency-staff",
        "operator-as-staff",
        "own-client-without-grant",
        "unknown-client",
    ],
)
def test_principals_without_a_grant_are_refused(
    node, seals, principals, granted_seal, principal, words
):
    resolved = {key: principals.get(value, value) for key, value in principal.items()}
    refusal = _refused_without_trace(
        node, lambda: seals.authorize_stamp(granted_seal.id, **resolved)
    )
    assert words in str(refusal) and not isinstance(refusal, SealNotUsableError)


def test_withdrawn_grants_and_disabled_clients_are_refused(node, seals, principals):
    seal = _make(seals)
    seals.grant(seal.id, client_id=principals["other-client"])
    seals.withdraw_grant(seal.id, client_id=principals["other-client"])
    _refused_without_trace(
        node,
        lambda: seals.authorize_stamp(seal.id, client_id=principals["other-client"]),
    )

    with node.sessions.begin() as session:
        client, _ = add_api_client(
            session, agency_uscc=AGENCY_USCC, name="soon-disabled"
        )
    seals.grant(seal.id, client_id=client.client_id)
    seals.authorize_stamp(seal.id, client_id=client.client_id)
    with node.sessions.begin() as session:
        disable_api_client(session, client.client_id)
    _refused_without_trace(
        node, lambda: seals.authorize_stamp(seal.id, client_id=client.client_id)
    )


@pytest.mark.parametrize("state", ["suspended", "revoked", "expired"])
def test_a_seal_that_is_not_active_cannot_stamp(node, seals, principals, state):
    seal = _make(seals, valid_until=dt.date.today() + dt.timedelta(days=2))
    seals.grant(seal.id, client_id=principals["client"])
    registry = seals
    if state == "suspended":
        seals.suspend_seal(seal.id)
    elif state == "revoked":
        seals.revoke_seal(seal.id, "privilegeWithdrawn")
    else:
        registry = _at(seals, dt.timedelta(days=3))

    for principal in ({"client_id": principals["client"]}, {"operator": "cli"}):
        refusal = _refused_without_trace(
            node, functools.partial(registry.authorize_stamp, seal.id, **principal)
        )
        assert isinstance(refusal, SealNotUsableError) and state in str(refusal)
    # Another agency learns nothing about the seal's state.
    refusal = _refused_without_trace(
        node,
        lambda: registry.authorize_stamp(
            seal.id, client_id=principals["foreign-client"]
        ),
    )
    assert state not in str(refusal)


def test_authorization_is_checked_again_when_the_stamp_is_logged(
    node, seals, principals, pdf_factory
):
    seal = _make(seals)
    seals.grant(seal.id, client_id=principals["client"])
    authorization = seals.authorize_stamp(seal.id, client_id=principals["client"])
    seals.suspend_seal(seal.id)
    _refused_without_trace(
        node,
        lambda: seals.record_stamp_intent(
            authorization, document=pdf_factory(), level=Level.B_B
        ),
    )


# -- stamping and the stamp log --------------------------------------------------------


def _seal_data_attributes(pdf: bytes) -> list[bytes]:
    reader = PdfFileReader(io.BytesIO(pdf))
    found = []
    for signature in reader.embedded_regular_signatures:
        attributes: cms.CMSAttributes = signature.signer_info["signed_attrs"]
        found += [
            a["values"][0].native
            for a in attributes
            if a["type"].dotted == SEAL_DATA_ATTRIBUTE_OID
        ]
    return found


def test_a_stamp_is_logged_before_and_after_its_signature(
    node, seals, principals, granted_seal, pdf_factory, trust_root
):
    authorization = seals.authorize_stamp(
        granted_seal.id, client_id=principals["client"]
    )
    credential = seals.credential(authorization)
    assert credential.image_pdf == seals.export_image(granted_seal.id, "pdf")
    stamper = Stamper(credential)
    document = pdf_factory()

    sealed = seals.stamp_document(authorization, stamper, document, B_B)

    (status,) = validate_all(sealed, trust_root)
    assert status.bottom_line, status.pretty_print_details()
    assert _seal_data_attributes(sealed) == [seals.seal_data(granted_seal.id)]
    (entry,) = seals.stamp_log(granted_seal.es_id, limit=1)
    assert entry.outcome is StampOutcome.STAMPED and entry.error is None
    assert entry.document_sha256 == hashlib.sha256(
        document
    ).hexdigest() and entry.document_bytes == len(document)
    assert entry.sealed_sha256 == hashlib.sha256(sealed).hexdigest()
    assert (
        str(entry.principal) == f"client:{principals['client']}"
        and entry.level == "B-B"
    )
    assert entry.finished_at is not None and entry.finished_at >= entry.started_at
    # The key store's audit entry of the signature names the log entry.
    actors = [e.actor for e in node.signing_entries(granted_seal.key_label)]
    assert actors == [f"client:{principals['client']}#stamp-{entry.log_id}"]


def test_a_failed_stamp_is_logged_as_failed_and_signs_nothing(
    node, seals, principals, granted_seal
):
    authorization = seals.authorize_stamp(granted_seal.id, staff_username="clerk")
    stamper = Stamper(seals.credential(authorization))
    signatures_before = node.granted_signatures(granted_seal.key_label)
    with pytest.raises(StampError):
        seals.stamp_document(
            authorization, stamper, b"%PDF-1.7 this is not a document", B_B
        )
    (entry,) = seals.stamp_log(granted_seal.id, limit=1)
    assert entry.outcome is StampOutcome.FAILED and entry.sealed_sha256 is None
    assert (
        entry.error
        and "StampError" in entry.error
        and str(entry.principal) == "staff:clerk"
    )
    assert node.granted_signatures(granted_seal.key_label) == signatures_before


def test_the_stamp_log_refuses_what_does_not_fit(
    seals, principals, granted_seal, pdf_factory
):
    authorization = seals.authorize_stamp(granted_seal.id, operator="cli")
    other = _make(seals, SealKind.LEGAL_REP)
    other_stamper = Stamper(
        seals.credential(seals.authorize_stamp(other.id, operator="cli"))
    )
    with pytest.raises(StampForbiddenError, match="another seal"):
        seals.stamp_document(authorization, other_stamper, pdf_factory(), B_B)

    intent = seals.record_stamp_intent(authorization, document=b"%PDF", level="b-lt")
    assert (
        intent.level == "B-LT" and intent.actor == f"operator:cli#stamp-{intent.log_id}"
    )
    seals.fail_stamp(intent, "abandoned")
    with pytest.raises(SealStateError):
        seals.complete_stamp(intent, b"%PDF sealed")

    with seals.stamping(authorization, b"%PDF", level=Level.B_B) as stamp:
        assert stamp.actor.startswith("operator:cli#stamp-")
    (entry,) = seals.stamp_log(granted_seal.id, limit=1)
    assert entry.outcome is StampOutcome.FAILED and "without a sealed document" in (
        entry.error or ""
    )


def test_stamps_a_dead_worker_left_pending_are_failed_as_abandoned(seals, granted_seal):
    authorization = seals.authorize_stamp(granted_seal.id, operator="cli")
    stale = seals.record_stamp_intent(authorization, document=b"%PDF", level="B-B")
    an_hour_later = _at(seals, dt.timedelta(hours=1))
    fresh = an_hour_later.record_stamp_intent(
        authorization, document=b"%PDF", level="B-B"
    )

    assert an_hour_later.fail_abandoned_stamps(older_than=dt.timedelta(minutes=30)) == 1
    latest, earlier = seals.stamp_log(granted_seal.id, limit=2)
    assert (latest.log_id, latest.outcome) == (fresh.log_id, StampOutcome.PENDING)
    assert (earlier.log_id, earlier.outcome) == (stale.log_id, StampOutcome.FAILED)
    assert earlier.error == "abandoned" and earlier.finished_at is not None
    with pytest.raises(SealStateError, match="already finished"):
        seals.complete_stamp(stale, b"%PDF sealed too late")
    with pytest.raises(ValueError, match="positive"):
        seals.fail_abandoned_stamps(older_than=dt.timedelta(0))
    seals.fail_stamp(fresh, "test over")


# -- SQLite and PostgreSQL -------------------------------------------------------------


def test_seals_on_each_database(database_url: str, tmp_path: Path, pdf_factory):
    node = build_node(tmp_path / "node", database_url=database_url)
    try:
        seals = SealRegistry(ra=node.ra, revocation=node.revocation)
        with ThreadPoolExecutor(max_workers=4) as pool:
            codes = list(pool.map(lambda _: seals._next_seal_code("350100"), range(12)))
        assert sorted(codes) == [f"350100{n:07d}" for n in range(1, 13)]

        seal = _make(seals, SealKind.INVOICE)
        assert seal.es_id == "3501000000013"
        with node.sessions.begin() as session:
            client, _ = add_api_client(session, agency_uscc=AGENCY_USCC, name="app")
        seals.grant(seal.id, client_id=client.client_id)
        authorization: StampAuthorization = seals.authorize_stamp(
            seal.id, client_id=client.client_id
        )
        sealed = seals.stamp_document(
            authorization, Stamper(seals.credential(authorization)), pdf_factory(), B_B
        )
        (entry,) = seals.stamp_log()
        assert (
            entry.outcome is StampOutcome.STAMPED
            and entry.sealed_sha256 == hashlib.sha256(sealed).hexdigest()
        )

        seals.revoke_seal(seal.id, "keyCompromise")
        with pytest.raises(SealNotUsableError):
            seals.authorize_stamp(seal.id, client_id=client.client_id)
        assert node.verify_audit().ok
    finally:
        node.close()
