"""Issuing licences: what one issuance yields, numbers and identifiers, refusals that
leave nothing behind, new versions, revocation and suspension with their status list,
presentations, holder binding, watermarked copies and batch issuance.

Everything runs on a real node (tests/certs/conftest.py): the HSM document signer, the
agency's official seal made by the seal registry, the node's TSA and revocation data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto.jwk import JWK
from pyhanko.pdf_utils.reader import PdfFileReader
from sd_jwt.verifier import SDJWTVerifier
from sqlalchemy import func, select

from certs.errors import LicenceDataError, SdJwtError, StatusListError
from certs.identifiers import LicenceIdentifier
from certs import issuance
from certs.issuance import (
    MAX_QR_VERSION,
    LicenceConflictError,
    LicenceNotFoundError,
    LicenceRegistry,
    LicenceRequest,
    LicenceRequestError,
    LicenceStateError,
    LicenceStatus,
    NoOfficialSealError,
    licence_vct,
)
from certs.layout import CHINA_STANDARD_TIME
from certs.models import LicenceRow, LicenceState, StatusListRow
from certs.qr import qr_version
from certs.sdjwt import (
    HolderKeyRequiredError,
    credential_holder_key,
    verify_presentation,
)
from certs.status import (
    StatusType,
    decode_and_verify_status_list,
    decode_and_verify_status_list_cwt,
)
from certs.status_service import (
    DocumentSignerError,
    StatusListDocument,
    StatusListNotFoundError,
    StatusLists,
    StatusListUnavailableError,
)
from certs.token import verify_token
from certs.types import get_licence_type, mask_id_number
from certs.verdict import Verdict
from certs.verify import verify_licence
from hsm_sim.audit import AuditEntry
from hsm_sim.errors import ErrorCategory
from pki.registry import add_api_client
from seal.errors import SealNotUsableError, StampForbiddenError
from seal.image import SealKind
from seal.keyword import find_text
from seal.lifecycle import Principal, SealRegistry, SealRequest, StampAuthorization
from seal.models import PrincipalKind, StampLogRow, StampOutcome
from seal.stamping import Stamper
from seal.trust_services import node_trust_services
from seal.verify import SignatureKind, verify_pdf
from tests.certs.conftest import (
    BASE_URL,
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    OPERATOR,
    OTHER_USCC,
    REGION,
    SEALLESS_USCC,
    SHIPPED_TYPES,
    TOUR_GUIDE,
    DocumentSigner,
    GuideCards,
    example_data,
    fixed_clock,
    make_registry,
    uscc,
)
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node, build_node


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def licence_rows(node: Node) -> int:
    with node.sessions() as session:
        return session.scalar(select(func.count()).select_from(LicenceRow)) or 0


def list_row(node: Node, uri: str) -> StatusListRow:
    with node.sessions() as session:
        row = session.scalars(
            select(StatusListRow).where(StatusListRow.uri == uri)
        ).one()
        session.expunge(row)
        return row


def business_data(serial: int) -> dict[str, str]:
    data = example_data(BUSINESS_LICENCE)
    data["uscc"] = uscc(serial)
    return data


# -- one issuance ----------------------------------------------------------------------


@pytest.mark.parametrize("type_code", SHIPPED_TYPES)
def test_issuance_yields_identifier_token_credential_and_sealed_pdf(
    licences: LicenceRegistry,
    licence_node: Node,
    document_signer: DocumentSigner,
    licence_trust,
    type_code: str,
) -> None:
    licence_type = get_licence_type(type_code)
    data = example_data(type_code)
    if type_code == BUSINESS_LICENCE:
        data["uscc"] = uscc(1)
    if type_code == FOOD_PERMIT:
        data["number"] = "JY23501000000011"
    issued = licences.issue_licence(
        type_code, AGENCY_USCC, data, actor="client:cl_issuer", principal=OPERATOR
    )
    record = issued.record

    identifier = LicenceIdentifier.parse(issued.identifier)
    assert (identifier.type_code, identifier.agency_code, identifier.version) == (
        type_code,
        AGENCY_USCC,
        1,
    )
    assert record.status is LicenceStatus.VALID
    assert record.agency_name == AGENCY_NAME
    assert record.holder_name == data[licence_type.holder.name_field]
    assert record.created_by == "client:cl_issuer"
    assert record.previous is None and record.successor is None

    # The QR token: signed by the document signer, the type's QR fields (masked).
    assert issued.token.startswith("LC1:")
    assert 1 <= issued.qr_version <= MAX_QR_VERSION == 20
    assert issued.qr_version == qr_version(issued.token, "Q")
    checked = verify_token(issued.token, trust=document_signer.trust, at=now())
    assert checked.verdict is Verdict.VALID, checked.reason
    claims = checked.licence
    assert claims is not None
    assert claims.issuer == REGION
    assert claims.licence_id == issued.identifier
    assert claims.type_code == type_code
    assert dict(claims.fields) == licence_type.qr_values(record.data)
    assert claims.status is not None
    assert (claims.status.index, claims.status.uri) == (
        record.status_index,
        record.status_list_uri,
    )
    assert claims.expires_at == record.token_expires_at
    assert claims.expires_at <= document_signer.certificate.not_valid_after_utc

    # The SD-JWT VC: every disclosable field a disclosure, the envelope in clear.
    disclosable = [s.name for s in licence_type.disclosable_fields if s.name in data]
    shown = licences.present_licence(issued.identifier, disclosable)
    presented = verify_presentation(shown, trust=document_signer.trust, now=now())
    assert presented.verdict is Verdict.VALID, presented.reason
    assert presented.vct == licence_vct(type_code)
    assert presented.disclosed == frozenset(disclosable)
    assert presented.fields["licence_id"] == issued.identifier
    assert presented.fields["issuing_agency"] == AGENCY_USCC
    for name in disclosable:
        assert presented.fields[name] == record.data[name]
    hidden = {s.name for s in licence_type.fields} - set(disclosable)
    assert not hidden & set(presented.fields)
    assert presented.expires_at == record.token_expires_at

    # The PDF: one certification seal of the issuing agency, valid offline (B-LT).
    assert licences.licence_pdf(issued.identifier) == issued.pdf
    report = verify_pdf(issued.pdf, trust_roots=list(licence_trust.seal_roots))
    assert report.valid, report.reason
    (seal,) = report.signatures
    assert seal.kind is SignatureKind.CERTIFICATION
    assert seal.certification_permission == "no-changes"
    assert seal.seal is not None and seal.seal.agency_uscc == AGENCY_USCC
    assert seal.revocation is not None and seal.revocation.source == "embedded"
    assert find_text(issued.pdf, issued.identifier)
    with licence_node.sessions() as session:
        stamp = session.scalars(
            select(StampLogRow).order_by(StampLogRow.id.desc()).limit(1)
        ).one()
    assert (stamp.principal_kind, stamp.principal_id) == (
        PrincipalKind.OPERATOR,
        OPERATOR.id,
    )
    assert stamp.outcome.value == "stamped"


# -- who stamps: the principal, as the seal registry allows it --------------------------


@pytest.fixture(scope="module")
def issuing_client(licence_node: Node) -> Principal:
    """An API client of the issuing agency, without a grant for its seal."""
    with licence_node.sessions.begin() as session:
        client, _ = add_api_client(
            session, agency_uscc=AGENCY_USCC, name="licence-system"
        )
    return Principal.of(client_id=client.client_id)


def test_a_client_stamps_licences_only_with_a_grant_and_the_log_names_it(
    licences: LicenceRegistry,
    seals: SealRegistry,
    official_seal,
    other_official_seal,
    guide_cards: GuideCards,
    licence_node: Node,
    issuing_client: Principal,
) -> None:
    actor = str(issuing_client)
    before = (licence_rows(licence_node), audit_head(licence_node))
    with pytest.raises(StampForbiddenError, match="no grant"):
        guide_cards.issue(actor=actor, principal=issuing_client)
    # A grant for another agency's seal is no grant for this one's.
    with licence_node.sessions.begin() as session:
        stranger, _ = add_api_client(session, agency_uscc=OTHER_USCC, name="stranger")
    seals.grant(other_official_seal.id, client_id=stranger.client_id)
    with pytest.raises(StampForbiddenError, match="another agency"):
        guide_cards.issue(principal=Principal.of(client_id=stranger.client_id))
    assert (licence_rows(licence_node), audit_head(licence_node)) == before

    seals.grant(official_seal.id, client_id=issuing_client.id)
    try:
        issued = guide_cards.issue(actor=actor, principal=issuing_client)
        licences.copy_with_watermark(
            issued.identifier, "银行开户", principal=issuing_client
        )
    finally:
        seals.withdraw_grant(official_seal.id, client_id=issuing_client.id)
    stamps = seals.stamp_log(official_seal.id, limit=2)  # the copy, the licence
    assert [(s.principal, s.outcome) for s in stamps] == [
        (issuing_client, StampOutcome.STAMPED)
    ] * 2
    with licence_node.sessions() as session:
        signers = session.scalars(
            select(AuditEntry.actor)
            .where(AuditEntry.key_label == official_seal.key_label)
            .order_by(AuditEntry.seq.desc())
            .limit(2)
        ).all()
    assert signers == [f"{actor}#stamp-{s.log_id}" for s in stamps]


def test_a_grant_withdrawn_during_issuance_stops_the_stamp(
    seals: SealRegistry,
    trust_services,
    official_seal,
    guide_cards: GuideCards,
    licence_node: Node,
    issuing_client: Principal,
) -> None:
    def withdraw_first(authorization: StampAuthorization) -> Stamper:
        seals.withdraw_grant(official_seal.id, client_id=issuing_client.id)
        return Stamper(seals.credential(authorization), services=trust_services)

    registry = LicenceRegistry(
        seals=seals,
        services=trust_services,
        region=REGION,
        base_url=BASE_URL,
        stamper_for=withdraw_first,
    )
    seals.grant(official_seal.id, client_id=issuing_client.id)
    rows = licence_rows(licence_node)
    # Checked when the licence is planned, and again when its stamp is logged.
    with pytest.raises(StampForbiddenError, match="no grant"):
        registry.issue_licence(
            TOUR_GUIDE,
            AGENCY_USCC,
            guide_cards.data(),
            actor=str(issuing_client),
            principal=issuing_client,
        )
    assert licence_rows(licence_node) == rows


def test_licence_numbers_come_from_the_data_or_a_serial(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    business = licences.issue_licence(
        BUSINESS_LICENCE, AGENCY_USCC, business_data(2), actor="t", principal=OPERATOR
    )
    assert business.record.number == uscc(2)
    food = example_data(FOOD_PERMIT)
    food["number"] = "JY13501000000022"
    permit = licences.issue_licence(
        FOOD_PERMIT, AGENCY_USCC, food, actor="t", principal=OPERATOR
    )
    assert permit.record.number == "JY13501000000022"
    # The card number D-3501-... has hyphens: the identifier takes year and serial.
    first, second = guide_cards.issue(), guide_cards.issue()
    year = dt.datetime.now(CHINA_STANDARD_TIME).year
    for card in (first, second):
        assert card.record.number.startswith(str(year))
        assert len(card.record.number) == 12
    assert int(second.record.number) == int(first.record.number) + 1
    assert first.record.data["card_number"].startswith("D-3501-")


def test_same_own_number_twice_is_a_conflict(licences: LicenceRegistry) -> None:
    licences.issue_licence(
        BUSINESS_LICENCE, AGENCY_USCC, business_data(3), actor="t", principal=OPERATOR
    )
    with pytest.raises(LicenceConflictError, match="change or renew it"):
        licences.issue_licence(
            BUSINESS_LICENCE,
            AGENCY_USCC,
            business_data(3),
            actor="t",
            principal=OPERATOR,
        )


def test_token_expiry_is_the_licence_end_or_the_signer_end(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    document_signer: DocumentSigner,
) -> None:
    long_term = licences.issue_licence(
        BUSINESS_LICENCE, AGENCY_USCC, business_data(4), actor="t", principal=OPERATOR
    )
    assert long_term.record.valid_until is None
    assert long_term.record.token_expires_at == (
        document_signer.certificate.not_valid_after_utc
    )
    today = dt.datetime.now(CHINA_STANDARD_TIME).date()
    short = guide_cards.issue(valid_until=today + dt.timedelta(days=30))
    assert short.record.valid_until == today + dt.timedelta(days=30)
    end = dt.datetime.combine(
        today + dt.timedelta(days=31), dt.time(), tzinfo=CHINA_STANDARD_TIME
    ) - dt.timedelta(seconds=1)
    assert short.record.token_expires_at == end
    # The default validity (3 years) outlives the signer: the signer decides.
    default = guide_cards.issue()
    assert default.record.valid_until is not None
    assert default.record.token_expires_at == (
        document_signer.certificate.not_valid_after_utc
    )


# -- refusals leave nothing ----------------------------------------------------------


def test_bad_data_names_every_problem_and_reserves_nothing(
    licences: LicenceRegistry, licence_node: Node
) -> None:
    before = licence_rows(licence_node)
    data = example_data(FOOD_PERMIT)
    data["number"] = "XX1"
    data["business_form"] = "bakery"
    del data["operator"]
    data["colour"] = "red"
    with pytest.raises(LicenceDataError) as raised:
        licences.issue_licence(
            FOOD_PERMIT, AGENCY_USCC, data, actor="t", principal=OPERATOR
        )
    message = str(raised.value)
    assert len(raised.value.problems) == 4
    for name in ("number", "business_form", "operator", "colour"):
        assert name in message
    assert licence_rows(licence_node) == before


def test_an_agency_without_an_official_seal_cannot_issue(
    licences: LicenceRegistry,
    licence_node: Node,
    seals: SealRegistry,
    other_official_seal,
) -> None:
    before = licence_rows(licence_node)
    with pytest.raises(NoOfficialSealError, match="no active official seal"):
        licences.issue_licence(
            TOUR_GUIDE,
            SEALLESS_USCC,
            example_data(TOUR_GUIDE),
            actor="t",
            principal=OPERATOR,
        )
    # Another agency's seal cannot be named either.
    with pytest.raises(NoOfficialSealError, match="not an official seal"):
        licences.issue_licence(
            TOUR_GUIDE,
            AGENCY_USCC,
            example_data(TOUR_GUIDE),
            actor="t",
            principal=OPERATOR,
            seal_id=other_official_seal.id,
        )
    assert licence_rows(licence_node) == before


def test_a_failure_after_the_reservation_leaves_nothing(
    seals: SealRegistry,
    trust_services,
    licence_node: Node,
    other_official_seal,
) -> None:
    """The seal is suspended while the licence is being signed: the stamp is refused,
    the reservation deleted and its status-list index given back."""

    suspended: list[bool] = []

    def suspend_then_stamper(authorization: StampAuthorization) -> Stamper:
        if not suspended:
            seals.suspend_seal(other_official_seal.id, note="test")
            suspended.append(True)
        return Stamper(seals.credential(authorization), services=trust_services)

    registry = LicenceRegistry(
        seals=seals,
        services=trust_services,
        region=REGION,
        base_url="http://pki.example.gov.cn",
        stamper_for=suspend_then_stamper,
    )
    before = licence_rows(licence_node)
    with licence_node.sessions() as session:
        allocated_before = session.scalar(select(func.sum(StatusListRow.allocated)))
    try:
        with pytest.raises(SealNotUsableError, match="cannot stamp"):
            registry.issue_licence(
                TOUR_GUIDE,
                OTHER_USCC,
                example_data(TOUR_GUIDE),
                actor="t",
                principal=OPERATOR,
            )
    finally:
        seals.reinstate_seal(other_official_seal.id)
    assert licence_rows(licence_node) == before
    with licence_node.sessions() as session:
        assert session.scalar(select(func.sum(StatusListRow.allocated))) == (
            allocated_before
        )
    # The agency issues normally once its seal is back.
    issued = registry.issue_licence(
        TOUR_GUIDE, OTHER_USCC, example_data(TOUR_GUIDE), actor="t", principal=OPERATOR
    )
    assert issued.record.agency_uscc == OTHER_USCC


def test_discard_unfinished_removes_what_a_killed_process_left(
    licences: LicenceRegistry, licence_node: Node, guide_cards: GuideCards
) -> None:
    moment = licences._now()
    signer = licences._signer(moment)
    plan = licences._plan(
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_cards.data()), moment, OPERATOR
    )
    reservation = licences._reserve(plan, moment, signer, actor="killed")
    with pytest.raises(LicenceNotFoundError):
        licences.get_licence(str(reservation.identifier))
    assert licences.discard_unfinished(older_than=dt.timedelta(hours=1)) == 0
    assert licences.discard_unfinished(older_than=dt.timedelta(seconds=-1)) == 1
    with licence_node.sessions() as session:
        assert session.get(LicenceRow, reservation.row_id) is None


def test_a_document_signer_about_to_expire_is_refused(
    seals: SealRegistry, trust_services, document_signer: DocumentSigner
) -> None:
    late = document_signer.certificate.not_valid_after_utc - dt.timedelta(hours=2)
    registry = make_registry(seals, trust_services, clock=fixed_clock(late))
    with pytest.raises(DocumentSignerError, match="rotate it"):
        registry.issue_licence(
            TOUR_GUIDE,
            AGENCY_USCC,
            example_data(TOUR_GUIDE),
            actor="t",
            principal=OPERATOR,
        )


# -- new versions ----------------------------------------------------------------------


def test_a_change_issues_the_next_version_and_supersedes_the_previous(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    document_signer: DocumentSigner,
    licence_trust,
    node_status,
) -> None:
    first = guide_cards.issue()
    changed = dict(first.record.data, level="senior")
    second = licences.renew_or_change(
        first.identifier, changed, actor="staff:li", principal=OPERATOR
    )
    assert (
        LicenceIdentifier.parse(second.identifier)
        == LicenceIdentifier.parse(first.identifier).next_version()
    )
    assert second.record.previous == first.identifier
    assert second.record.data["level"] == "senior"
    old = licences.get_licence(first.identifier)
    assert old.status is LicenceStatus.SUPERSEDED
    assert old.successor == second.identifier

    old_qr = verify_licence(
        token=first.token,
        trust=licence_trust,
        status_source=node_status,
        now=now(),
        explain=licences.status_detail,
    )
    assert old_qr.verdict is Verdict.REVOKED
    assert f"replaced by version {second.identifier}" in old_qr.reason
    new_qr = verify_licence(
        token=second.token, trust=licence_trust, status_source=node_status, now=now()
    )
    assert new_qr.verdict is Verdict.VALID, new_qr.reason

    with pytest.raises(LicenceStateError, match="superseded"):
        licences.renew_or_change(
            first.identifier, changed, actor="t", principal=OPERATOR
        )


def _bound_to(sd_jwt: str) -> object:
    """The public numbers of the holder key a credential is bound to (None: unbound)."""
    key = credential_holder_key(sd_jwt)
    return key.public_numbers() if key is not None else None


def test_a_new_version_keeps_the_holder_key_unless_a_new_one_is_given(
    licences: LicenceRegistry, guide_cards: GuideCards, document_signer: DocumentSigner
) -> None:
    holder = ec.generate_private_key(ec.SECP256R1())
    first = guide_cards.issue(holder_key=holder.public_key())
    assert first.record.holder_bound
    changed = dict(first.record.data, level="senior")
    second = licences.renew_or_change(
        first.identifier, changed, actor="staff:li", principal=OPERATOR
    )
    # No key given: the new credential is bound to the previous version's key.
    assert _bound_to(second.sd_jwt) == holder.public_key().public_numbers()
    assert second.record.holder_bound
    assert licences.get_licence(second.identifier).to_dict()["holder_bound"] is True
    shown = licences.present_licence(
        second.identifier, ["level"], holder_key=holder, nonce="n-2", aud="bank"
    )
    verified = verify_presentation(
        shown,
        trust=document_signer.trust,
        now=now(),
        expected_nonce="n-2",
        expected_aud="bank",
    )
    assert verified.verdict is Verdict.VALID and verified.key_bound
    assert verified.fields["level"] == "senior"

    new_phone = ec.generate_private_key(ec.SECP256R1())
    third = licences.renew_or_change(
        second.identifier,
        dict(changed, level="special"),
        actor="staff:li",
        principal=OPERATOR,
        holder_key=new_phone.public_key(),
    )
    assert _bound_to(third.sd_jwt) == new_phone.public_key().public_numbers()

    unbound = guide_cards.issue()
    assert not unbound.record.holder_bound
    renewed = licences.renew_or_change(
        unbound.identifier, dict(unbound.record.data), actor="t", principal=OPERATOR
    )
    assert _bound_to(renewed.sd_jwt) is None and not renewed.record.holder_bound
    assert licences.get_licence(renewed.identifier).to_dict()["holder_bound"] is False


def test_a_new_own_number_is_not_a_new_version(licences: LicenceRegistry) -> None:
    data = example_data(FOOD_PERMIT)
    data["number"] = "JY23501000000055"
    first = licences.issue_licence(
        FOOD_PERMIT, AGENCY_USCC, data, actor="t", principal=OPERATOR
    )
    renumbered = dict(first.record.data, number="JY23501000000056")
    with pytest.raises(LicenceConflictError, match="a new number is a new licence"):
        licences.renew_or_change(
            first.identifier, renumbered, actor="t", principal=OPERATOR
        )
    # A business licence's number is its holder's code: a new one is a new holder.
    business = licences.issue_licence(
        BUSINESS_LICENCE, AGENCY_USCC, business_data(5), actor="t", principal=OPERATOR
    )
    with pytest.raises(LicenceConflictError, match="the holder changed"):
        licences.renew_or_change(
            business.identifier, business_data(6), actor="t", principal=OPERATOR
        )
    assert licences.get_licence(first.identifier).status is LicenceStatus.VALID


# -- status ----------------------------------------------------------------------------


def status_list_signers(node: Node, after: int) -> list[str]:
    """The actors of the status-list signatures after audit entry `after`."""
    with node.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry.actor)
                .where(
                    AuditEntry.operation == "sign-status-list", AuditEntry.seq > after
                )
                .order_by(AuditEntry.seq)
            )
        )


def audit_head(node: Node) -> int:
    with node.sessions() as session:
        return session.scalar(select(func.max(AuditEntry.seq))) or 0


def test_status_lists_are_re_signed_under_the_actor_who_changed_them(
    licences: LicenceRegistry, guide_cards: GuideCards, licence_node: Node
) -> None:
    first = guide_cards.issue()
    # A new version supersedes the first: the first one's list is signed afterwards.
    before = audit_head(licence_node)
    second = licences.renew_or_change(
        first.identifier,
        dict(first.record.data, level="senior"),
        actor="client:cl_lists",
        principal=OPERATOR,
    )
    signers = status_list_signers(licence_node, before)  # its JWT and CWT forms
    assert signers and all(s.startswith("client:cl_lists#licence-") for s in signers)
    identifier = second.identifier
    for change, actor in (
        (lambda: licences.suspend(identifier, actor="staff:wang"), "staff:wang"),
        (lambda: licences.reinstate(identifier, actor="client:cl_x"), "client:cl_x"),
        (lambda: licences.revoke(identifier, "吊销", actor="staff:li"), "staff:li"),
    ):
        before = audit_head(licence_node)
        change()
        signers = status_list_signers(licence_node, before)
        assert signers and all(s.startswith(f"{actor}#licence-") for s in signers)


def test_revoke_suspend_reinstate_re_sign_the_status_list(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    licence_node: Node,
    document_signer: DocumentSigner,
) -> None:
    issued = guide_cards.issue()
    uri, index = issued.record.status_list_uri, issued.record.status_index
    list_id = uri.rsplit("/", 1)[1]

    def published() -> StatusType:
        row = list_row(licence_node, uri)
        assert row.signed_version == row.version
        jwt = licences.status_list_token(list_id, "jwt")
        cwt = licences.status_list_token(list_id, "cwt")
        assert isinstance(jwt, str) and isinstance(cwt, bytes)
        from_jwt = decode_and_verify_status_list(
            jwt, trust=document_signer.trust, now=now(), expected_uri=uri
        )
        from_cwt = decode_and_verify_status_list_cwt(
            cwt, trust=document_signer.trust, now=now(), expected_uri=uri
        )
        assert from_jwt.issuer == from_cwt.issuer == REGION
        assert from_jwt.ttl == 3600
        assert from_jwt.status_of(index) is from_cwt.status_of(index)
        return from_jwt.status_of(index)

    assert published() is StatusType.VALID
    suspended = licences.suspend(issued.identifier, actor="staff:li", note="核查中")
    assert suspended.status is LicenceStatus.SUSPENDED
    assert published() is StatusType.SUSPENDED
    with pytest.raises(LicenceStateError):
        licences.suspend(issued.identifier, actor="t")
    assert licences.reinstate(issued.identifier, actor="t").status is (
        LicenceStatus.VALID
    )
    assert published() is StatusType.VALID
    with pytest.raises(LicenceStateError):
        licences.reinstate(issued.identifier, actor="t")
    revoked = licences.revoke(issued.identifier, "吊销", actor="staff:li")
    assert revoked.status is LicenceStatus.REVOKED
    assert "吊销" in (revoked.status_note or "")
    assert published() is StatusType.INVALID
    for change in (
        lambda: licences.revoke(issued.identifier, "again", actor="t"),
        lambda: licences.suspend(issued.identifier, actor="t"),
        lambda: licences.reinstate(issued.identifier, actor="t"),
    ):
        with pytest.raises(LicenceStateError, match="revoked"):
            change()
    with pytest.raises(LicenceNotFoundError):
        licences.revoke("1.2.156.3005.2.nothing", "x", actor="t")


def test_a_status_list_document_carries_its_iat_exp_and_ttl(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    licence_node: Node,
    document_signer: DocumentSigner,
) -> None:
    issued = guide_cards.issue()
    uri = issued.record.status_list_uri
    list_id = uri.rsplit("/", 1)[1]
    jwt = licences.status_list_document(list_id)
    cwt = licences.status_list_document(list_id, "cwt")
    assert isinstance(jwt, StatusListDocument) and jwt.form == "jwt"
    assert jwt.token == licences.status_list_token(list_id, "jwt")
    assert cwt.token == licences.status_list_token(list_id, "cwt")
    assert isinstance(cwt.token, bytes) and cwt.form == "cwt"
    verified = decode_and_verify_status_list(
        jwt.token, trust=document_signer.trust, now=now(), expected_uri=uri
    )
    row = list_row(licence_node, uri)
    for document in (jwt, cwt):
        assert (document.list_id, document.uri) == (list_id, uri)
        assert document.issued_at == verified.issued_at == row.signed_at
        assert document.expires_at == verified.expires_at == row.expires_at
        assert document.ttl == dt.timedelta(seconds=verified.ttl or 0)
        assert document.ttl == dt.timedelta(hours=1)
        assert not document.behind
    at = jwt.issued_at
    assert jwt.max_age(at) == 3600  # the ttl ...
    assert jwt.max_age(jwt.expires_at - dt.timedelta(seconds=90)) == 90  # ... to exp
    assert jwt.max_age(jwt.expires_at + dt.timedelta(hours=1)) == 0
    assert not jwt.expired(at) and jwt.expired(jwt.expires_at)
    with pytest.raises(StatusListNotFoundError):
        licences.status_list_document("999999-9")
    with pytest.raises(StatusListError):
        licences.status_list_document(list_id, "xml")


def test_a_stale_list_is_signed_when_asked_for(
    licences: LicenceRegistry, guide_cards: GuideCards, licence_node: Node
) -> None:
    issued = guide_cards.issue()
    uri = issued.record.status_list_uri
    row = list_row(licence_node, uri)
    with licence_node.sessions.begin() as session:
        StatusLists.record_change(session, row.id)  # a change whose signing failed
    assert list_row(licence_node, uri).signed_version < row.version + 1
    licences.status_list_token(row.public_id)
    refreshed = list_row(licence_node, uri)
    assert refreshed.signed_version == refreshed.version == row.version + 1
    with licence_node.sessions.begin() as session:
        StatusLists.record_change(session, row.id)
    assert licences.publish_status_lists() >= 1
    assert licences.publish_status_lists() == 0


def test_unknown_status_lists_and_forms(licences: LicenceRegistry) -> None:
    with pytest.raises(StatusListNotFoundError):
        licences.status_list_token("999999-9")
    with pytest.raises(StatusListError):
        licences.status_list_token("350100-1", "xml")


def test_lists_open_and_fill_with_random_indexes(
    seals: SealRegistry, trust_services, licence_node: Node, guide_cards: GuideCards
) -> None:
    """A node whose lists hold 8 licences: a list takes 6 (three quarters), then the
    next list opens; indexes within a list are distinct."""
    registry = LicenceRegistry(
        seals=seals,
        services=trust_services,
        region="350200",
        base_url="http://pki.example.gov.cn",
        status_lists=StatusLists(
            sessions=licence_node.sessions,
            ca=licence_node.ca,
            keystore=licence_node.keystore,
            region="350200",
            base_url="http://pki.example.gov.cn",
            size=8,
        ),
    )
    requests = [
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_cards.data()) for _ in range(8)
    ]
    batch = registry.issue_licences(requests, actor="t", principal=OPERATOR)
    assert not batch.failed
    by_list: dict[str, list[int]] = {}
    for issued in batch.issued:
        by_list.setdefault(issued.record.status_list_uri, []).append(
            issued.record.status_index
        )
    assert sorted(len(v) for v in by_list.values()) == [2, 6]
    for uri, indexes in by_list.items():
        assert uri.startswith("http://pki.example.gov.cn/status/350200-")
        assert len(set(indexes)) == len(indexes)
        assert all(0 <= i < 8 for i in indexes)


# -- batch -----------------------------------------------------------------------------


def test_batch_issuance_signs_tokens_in_one_batch_and_reports_failures(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    licence_node: Node,
    document_signer: DocumentSigner,
) -> None:
    def token_entries() -> list[str]:
        with licence_node.sessions() as session:
            return list(
                session.scalars(
                    select(AuditEntry.detail)
                    .where(
                        AuditEntry.key_label == document_signer.label,
                        AuditEntry.operation == "sign-licence-token",
                    )
                    .order_by(AuditEntry.seq)
                )
            )

    before_entries = token_entries()
    bad = guide_cards.data()
    bad["gender"] = "unknown"
    requests = [
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_cards.data()),
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, bad),
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_cards.data()),
        LicenceRequest(TOUR_GUIDE, SEALLESS_USCC, guide_cards.data()),
    ]
    progress: list[tuple[int, int]] = []
    batch = licences.issue_licences(
        requests,
        actor="t",
        principal=OPERATOR,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert len(batch.issued) == 2
    assert [f.index for f in batch.failed] == [1, 3]
    assert "gender" in batch.failed[0].reason
    assert "official seal" in batch.failed[1].reason
    assert progress == [(1, 2), (2, 2)]
    # One audited signature per issued token, made as one batch.
    new_entries = token_entries()[len(before_entries) :]
    assert len(new_entries) == 2
    assert [entry.split(" in batch ")[0] for entry in new_entries] == [
        "item 1 of 2",
        "item 2 of 2",
    ]
    assert len({entry.split(" in batch ")[1] for entry in new_entries}) == 1
    for issued in batch.issued:
        assert (
            verify_token(issued.token, trust=document_signer.trust, at=now()).verdict
            is Verdict.VALID
        )
        assert licences.get_licence(issued.identifier).status is LicenceStatus.VALID


# -- reading, presenting, copies -------------------------------------------------------


def test_find_licences_by_holder(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    issued = guide_cards.issue(data={"name": "欧阳娜娜"})
    found = licences.find_licences(holder="欧阳")
    assert [r.identifier for r in found] == [issued.identifier]
    by_code = licences.find_licences(holder=issued.record.holder_code)
    assert issued.identifier in [r.identifier for r in by_code]
    assert licences.find_licences(holder="100%_") == []
    assert all(
        r.type_code == FOOD_PERMIT
        for r in licences.find_licences(type_code=FOOD_PERMIT)
    )


def test_qr_fields_of_a_person_are_masked(
    guide_cards: GuideCards, document_signer
) -> None:
    issued = guide_cards.issue()
    claims = verify_token(issued.token, trust=document_signer.trust, at=now()).licence
    assert claims is not None
    full = issued.record.data["id_number"]
    assert claims.fields["id_number"] == mask_id_number(full) != full
    assert full not in issued.token


def test_presentation_with_key_binding(
    licences: LicenceRegistry, guide_cards: GuideCards, document_signer
) -> None:
    holder = ec.generate_private_key(ec.SECP256R1())
    bound = guide_cards.issue(holder_key=holder.public_key())
    # Without the holder's key no presentation is made: verifiers would refuse it.
    with pytest.raises(HolderKeyRequiredError, match="bound to its holder's key") as no:
        licences.present_licence(bound.identifier, ["name"])
    assert no.value.category is ErrorCategory.BAD_REQUEST
    assert bound.identifier in str(no.value)
    shown = licences.present_licence(
        bound.identifier, ["name"], holder_key=holder, nonce="n-1", aud="bank"
    )
    ok = verify_presentation(
        shown,
        trust=document_signer.trust,
        now=now(),
        expected_nonce="n-1",
        expected_aud="bank",
        require_key_binding=True,
    )
    assert ok.verdict is Verdict.VALID and ok.key_bound
    assert set(ok.disclosed) == {"name"}
    replay = verify_presentation(
        shown,
        trust=document_signer.trust,
        now=now(),
        expected_nonce="n-2",
        expected_aud="bank",
    )
    assert replay.verdict is not Verdict.VALID

    unbound = guide_cards.issue()
    with pytest.raises(SdJwtError, match="not bound"):
        licences.present_licence(
            unbound.identifier, ["name"], holder_key=holder, nonce="n", aud="a"
        )
    assert not licences.get_licence(unbound.identifier).holder_bound
    licences.bind_holder_key(unbound.identifier, holder.public_key(), actor="holder")
    assert licences.get_licence(unbound.identifier).holder_bound
    rebound = licences.present_licence(
        unbound.identifier, ["name", "level"], holder_key=holder, nonce="n", aud="a"
    )
    again = verify_presentation(
        rebound,
        trust=document_signer.trust,
        now=now(),
        expected_nonce="n",
        expected_aud="a",
    )
    assert again.verdict is Verdict.VALID and again.key_bound
    assert again.status is not None
    assert again.status.index == unbound.record.status_index


def test_a_watermarked_copy_is_sealed_again_with_the_watermark_under_the_seal(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    licence_trust,
    node_status,
) -> None:
    issued = guide_cards.issue()
    copy = licences.copy_with_watermark(
        issued.identifier, "银行开户", principal=OPERATOR
    )
    assert copy != issued.pdf
    assert find_text(copy, "仅供银行开户使用")
    assert not find_text(issued.pdf, "仅供银行开户使用")
    result = verify_licence(
        pdf=copy, trust=licence_trust, status_source=node_status, now=now()
    )
    assert result.verdict is Verdict.VALID, result.reason
    reader = PdfFileReader(io.BytesIO(copy))
    (field,) = [
        value
        for value in reader.root["/AcroForm"]["/Fields"]
        if value.get_object().get("/V") is not None
    ]
    assert "仅供银行开户使用" in str(field.get_object()["/V"]["/Reason"])
    licences.revoke(issued.identifier, "test", actor="t")
    with pytest.raises(LicenceStateError):
        licences.copy_with_watermark(issued.identifier, "银行开户", principal=OPERATOR)


def test_record_as_json_and_pending_rows_are_invisible(
    licences: LicenceRegistry, guide_cards: GuideCards, licence_node: Node
) -> None:
    issued = guide_cards.issue()
    shown = issued.to_dict()
    assert shown["identifier"] == issued.identifier
    assert shown["token"] == issued.token and shown["sd_jwt"] == issued.sd_jwt
    assert shown["status"] == "valid"
    assert shown["status_list"]["idx"] == issued.record.status_index
    assert shown["pdf_bytes"] == len(issued.pdf)
    with licence_node.sessions() as session:
        pending = session.scalar(
            select(func.count())
            .select_from(LicenceRow)
            .where(LicenceRow.state == LicenceState.PENDING)
        )
    assert pending == 0
    assert dataclasses.is_dataclass(issued.record)


# -- concurrency, on SQLite and PostgreSQL ----------------------------------------------


def test_concurrent_issuance_and_status_changes(
    database_url: str, tmp_path: Path
) -> None:
    """Four threads issue guide cards and revoke some of them on one node: every
    licence gets its own serial and status index, every change reaches the list."""
    node = build_node(tmp_path / "node", database_url=database_url)
    try:
        seals = SealRegistry(ra=node.ra, revocation=node.revocation)
        seals.make_seal(SealRequest(agency_uscc=AGENCY_USCC, kind=SealKind.OFFICIAL))
        registry = make_registry(
            seals, node_trust_services(node.timestamps, node.revocation)
        )
        cards = GuideCards(registry)
        data = [cards.data() for _ in range(8)]
        barrier = threading.Barrier(4)

        def work(offset: int) -> list[str]:
            barrier.wait()
            identifiers = []
            for item in data[offset::4]:
                issued = registry.issue_licence(
                    TOUR_GUIDE, AGENCY_USCC, item, actor="t", principal=OPERATOR
                )
                identifiers.append(issued.identifier)
            registry.revoke(identifiers[0], "test", actor="t")
            return identifiers

        with ThreadPoolExecutor(max_workers=4) as pool:
            issued = [i for batch in pool.map(work, range(4)) for i in batch]
        records = [registry.get_licence(i) for i in issued]
        assert len({r.number for r in records}) == 8
        assert len({(r.status_list_uri, r.status_index) for r in records}) == 8
        trust = registry.licence_trust()
        status = registry.status_source()
        verdicts = sorted(
            verify_licence(
                token=registry.licence_token(r.identifier),
                trust=trust,
                status_source=status,
                now=now(),
            ).verdict.value
            for r in records
        )
        assert verdicts == ["REVOKED"] * 4 + ["VALID"] * 4
    finally:
        node.close()


def test_an_unexpected_error_in_a_batch_costs_only_its_own_licence(
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    licence_node: Node,
    monkeypatch,
) -> None:
    stamp = licences._stamp
    calls = iter(range(100))

    def stamp_failing_the_second(*args, **kwargs):
        if next(calls) == 1:
            raise RuntimeError("disk full at 350102199001011234")
        return stamp(*args, **kwargs)

    monkeypatch.setattr(licences, "_stamp", stamp_failing_the_second)
    requests = [
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_cards.data()) for _ in range(3)
    ]
    batch = licences.issue_licences(requests, actor="t", principal=OPERATOR)

    assert len(batch.issued) == 2
    (failure,) = batch.failed
    assert failure.index == 1
    assert "unexpected error (RuntimeError)" in failure.reason
    assert "350102199001011234" not in failure.reason
    for issued in batch.issued:
        assert licences.get_licence(issued.identifier).status is LicenceStatus.VALID
    with licence_node.sessions() as session:
        pending = session.scalar(
            select(func.count())
            .select_from(LicenceRow)
            .where(LicenceRow.state == LicenceState.PENDING)
        )
    assert pending == 0


def test_an_issued_licence_is_returned_even_if_its_list_cannot_be_re_signed(
    licences: LicenceRegistry, guide_cards: GuideCards, monkeypatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("status list store broke")

    monkeypatch.setattr(licences, "_publish_after_issue", broken)
    issued = guide_cards.issue()
    assert licences.get_licence(issued.identifier).status is LicenceStatus.VALID


@pytest.fixture
def pg_licences(postgres_url: str, tmp_path: Path):
    """A licence registry on PostgreSQL, whose READ COMMITTED lets a transaction see
    what another committed after it began (SQLite's BEGIN IMMEDIATE serialises)."""
    node = build_node(tmp_path / "node", database_url=postgres_url)
    seals = SealRegistry(ra=node.ra, revocation=node.revocation)
    seals.make_seal(SealRequest(agency_uscc=AGENCY_USCC, kind=SealKind.OFFICIAL))
    yield make_registry(seals, node_trust_services(node.timestamps, node.revocation))
    node.close()


def _pause_in(monkeypatch, module, name: str, thread_name: str):
    """Make `module.name` stop in the thread `thread_name` until released; returns
    (reached, release) events."""
    original = getattr(module, name)
    reached, release = threading.Event(), threading.Event()

    def paused(*args, **kwargs):
        if threading.current_thread().name == thread_name:
            reached.set()
            assert release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, paused)
    return reached, release


def test_a_revocation_during_a_renewal_is_never_overwritten(
    pg_licences: LicenceRegistry, monkeypatch
) -> None:
    cards = GuideCards(pg_licences)
    first = cards.issue()
    renamed = dict(first.record.data, name="改名")
    # The renewal stops inside its final transaction, after reading the previous
    # version and before marking it superseded; the revocation comes then.
    reached, release = _pause_in(
        monkeypatch, StatusLists, "record_change", thread_name="renewal"
    )
    outcomes: dict[str, object] = {}

    def run(name: str, action) -> None:
        try:
            outcomes[name] = action()
        except LicenceStateError as exc:
            outcomes[name] = exc

    renewal = threading.Thread(
        target=run,
        args=(
            "renewal",
            lambda: pg_licences.renew_or_change(
                first.identifier, renamed, actor="t", principal=OPERATOR
            ),
        ),
        name="renewal",
    )
    renewal.start()
    assert reached.wait(60)
    revocation = threading.Thread(
        target=run,
        args=("revocation", lambda: pg_licences.revoke(first.identifier, "fraud", actor="t")),
    )
    revocation.start()
    revocation.join(1)  # it waits for the renewal's lock
    release.set()
    renewal.join(60)
    revocation.join(60)

    previous = pg_licences.get_licence(first.identifier)
    if isinstance(outcomes["revocation"], LicenceStateError):
        # The renewal went first: the revocation was refused, not lost.
        assert previous.status is LicenceStatus.SUPERSEDED
        assert "superseded" in str(outcomes["revocation"])
    else:
        assert previous.status is LicenceStatus.REVOKED
        assert isinstance(outcomes["renewal"], LicenceStateError)
    valid = [
        r for r in pg_licences.find_licences(holder=renamed["id_number"])
        if r.status is LicenceStatus.VALID
    ]
    assert len(valid) <= 1 and previous.status is not LicenceStatus.VALID


def test_the_sweeper_never_deletes_a_reservation_completed_meanwhile(
    pg_licences: LicenceRegistry, monkeypatch
) -> None:
    cards = GuideCards(pg_licences)
    now = pg_licences._now()
    signer = pg_licences._signer(now)
    plan = pg_licences._plan(
        LicenceRequest(type_code=TOUR_GUIDE, agency_uscc=AGENCY_USCC, data=cards.data()),
        now,
        OPERATOR,
    )
    reservation = pg_licences._reserve(plan, now, signer, actor="t")
    # The sweeper has selected the (still pending) reservation and stops before
    # deleting it; the reservation is completed then.
    reached, release = _pause_in(monkeypatch, issuance, "delete", thread_name="sweeper")
    swept: list[int] = []
    sweeper = threading.Thread(
        target=lambda: swept.append(
            pg_licences.discard_unfinished(older_than=dt.timedelta(seconds=-1))
        ),
        name="sweeper",
    )
    sweeper.start()
    assert reached.wait(60)
    issued = pg_licences._complete(reservation, signer, actor="t")
    release.set()
    sweeper.join(60)

    assert swept == [0]
    record = pg_licences.get_licence(issued.identifier)
    assert record.status is LicenceStatus.VALID
    with pg_licences.sessions() as session:
        allocated = session.scalar(select(func.sum(StatusListRow.allocated)))
    assert allocated == 1


def test_a_change_keeps_the_holder_and_a_revocation_needs_a_reason(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    issued = guide_cards.issue()
    other_holder = dict(issued.record.data, id_number=guide_cards.data()["id_number"])
    with pytest.raises(LicenceConflictError, match="the holder changed"):
        licences.renew_or_change(
            issued.identifier, other_holder, actor="t", principal=OPERATOR
        )
    with pytest.raises(LicenceRequestError, match="say why"):
        licences.revoke(issued.identifier, "  ", actor="t")
    assert licences.get_licence(issued.identifier).status is LicenceStatus.VALID


def test_a_revocation_whose_list_cannot_be_signed_stands_and_says_so(
    seals: SealRegistry,
    trust_services,
    licences: LicenceRegistry,
    guide_cards: GuideCards,
    document_signer: DocumentSigner,
    licence_node: Node,
) -> None:
    """Half an hour before the document signer expires no list can be signed (its
    ttl is an hour): the revocation is recorded, the caller told, and the list is
    signed as soon as it is asked for once a signer can."""
    issued = guide_cards.issue()
    late = document_signer.certificate.not_valid_after_utc - dt.timedelta(minutes=30)
    registry = make_registry(seals, trust_services, clock=fixed_clock(late))
    with pytest.raises(StatusListUnavailableError, match="is revoked, but"):
        registry.revoke(issued.identifier, "test", actor="t")
    assert licences.get_licence(issued.identifier).status is LicenceStatus.REVOKED
    uri = issued.record.status_list_uri
    stale = list_row(licence_node, uri)
    assert stale.signed_version < stale.version
    token = licences.status_list_token(stale.public_id)
    verified = decode_and_verify_status_list(
        token, trust=document_signer.trust, now=now(), expected_uri=uri
    )
    assert verified.status_of(issued.record.status_index) is StatusType.INVALID


def test_the_reference_implementation_accepts_a_registry_presentation(
    licences: LicenceRegistry, guide_cards: GuideCards, document_signer: DocumentSigner
) -> None:
    """Acceptance 2 at the library level: the sd-jwt package (PyPI) verifies what
    present_licence makes, sees only the chosen fields, and refuses a wrong nonce."""
    holder = ec.generate_private_key(ec.SECP256R1())
    issued = guide_cards.issue(holder_key=holder.public_key())
    shown = licences.present_licence(
        issued.identifier, ["name", "level"], holder_key=holder, nonce="n-1", aud="bank"
    )

    def issuer_key(issuer: str, header: dict) -> JWK:
        assert issuer == REGION
        return JWK.from_pyca(document_signer.certificate.public_key())

    payload = SDJWTVerifier(
        shown, issuer_key, expected_aud="bank", expected_nonce="n-1"
    ).get_verified_payload()
    assert payload["name"] == issued.record.data["name"]
    assert payload["level"] == issued.record.data["level"]
    assert payload["licence_id"] == issued.identifier
    assert not {"id_number", "gender", "affiliation", "card_number"} & set(payload)
    with pytest.raises(ValueError, match="Invalid nonce"):
        SDJWTVerifier(shown, issuer_key, expected_aud="bank", expected_nonce="n-2")
