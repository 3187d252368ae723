"""Shared certs fixtures: a region node with its document signer, an issuing agency with
an active official seal made through the seal registry, and the licence registry.

One node for the licence tests of a session (building it and the seal takes about two
seconds). Tests that change the state of a licence issue their own licence first, so
they do not depend on each other; tests that need a clock of their own build their
own registry over the same node.

`DocumentSigner` / `document_signer` are the region's token signer (HSM key handle,
certificate, SignerList) for any certs test that signs tokens or lists directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from certs.issuance import IssuedLicence, LicenceRegistry
from certs.token import SignerList, TrustedSigner
from certs.verify import LicenceTrust, StatusSource
from hsm_sim.api import KeyUsage
from pki.ca_models import ServicePurpose
from pki.registry import register_agency
from pki.timestamping import service_credential
from pki.uscc import compute_uscc_check_character
from seal.image import SealKind
from seal.lifecycle import Principal, SealRecord, SealRegistry, SealRequest
from seal.trust_services import TrustServices, node_trust_services
from tests.helpers.node import AGENCY_USCC, Node, build_node

REGION = "350100"
BASE_URL = "http://pki.example.gov.cn"
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "licences"
BUSINESS_LICENCE = "11100000YXML00000Q001"
FOOD_PERMIT = "11100000YXML00000Q002"
TOUR_GUIDE = "11100000YXML00000Q003"
SHIPPED_TYPES = (BUSINESS_LICENCE, FOOD_PERMIT, TOUR_GUIDE)
# An agency registered on the node that has no official seal.
SEALLESS_NAME = "某某市文化和旅游局"
SEALLESS_USCC = "11350100MB0009102" + compute_uscc_check_character("11350100MB0009102")
# A second agency with an official seal of its own.
OTHER_NAME = "某某市卫生健康委员会"
OTHER_USCC = "11350100MB0009103" + compute_uscc_check_character("11350100MB0009103")
# Who stamps the licences of most tests: the node's operator, who needs no grant.
OPERATOR = Principal.of(operator="licence-tests")


def example_data(type_code: str) -> dict[str, Any]:
    """The shipped example data of a licence type, as `yinxin license issue` reads it."""
    return json.loads((EXAMPLES / f"{type_code}.json").read_text(encoding="utf-8"))


def uscc(serial: int) -> str:
    """A valid unified social credit code of a company, distinct for each serial."""
    body = f"91350100MA{serial:07d}"
    return body + compute_uscc_check_character(body)


def id_number(serial: int) -> str:
    """A valid citizen identity number (Fuzhou, born 1990-01-01), distinct per serial."""
    body = f"350102199001{1 + serial % 28:02d}{serial % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(digit) * weight for digit, weight in zip(body, weights))
    return body + "10X98765432"[total % 11]


@dataclasses.dataclass(frozen=True)
class DocumentSigner:
    """The region's document signer: what signs LC1 tokens, SD-JWTs and status lists."""

    node: Node
    label: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: Any
    trust: SignerList

    @classmethod
    def of(cls, node: Node) -> DocumentSigner:
        label, certificate, chain = service_credential(
            node.ca, ServicePurpose.DOCUMENT_SIGNER
        )
        return cls(
            node=node,
            label=label,
            certificate=certificate,
            chain=tuple(chain),
            key=node.keystore.private_key(label, usage=KeyUsage.TOKEN),
            trust=SignerList([TrustedSigner(certificate, issuer=REGION)]),
        )


@pytest.fixture(scope="session")
def licence_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("licence-node") / "node")
    with node.sessions.begin() as session:
        register_agency(session, name=SEALLESS_NAME, uscc=SEALLESS_USCC, region=REGION)
        register_agency(session, name=OTHER_NAME, uscc=OTHER_USCC, region=REGION)
    yield node
    node.close()


@pytest.fixture(scope="session")
def document_signer(licence_node: Node) -> DocumentSigner:
    return DocumentSigner.of(licence_node)


@pytest.fixture(scope="session")
def seals(licence_node: Node) -> SealRegistry:
    return SealRegistry(ra=licence_node.ra, revocation=licence_node.revocation)


@pytest.fixture(scope="session")
def official_seal(seals: SealRegistry) -> SealRecord:
    """The issuing agency's official seal (公章), made by the seal registry."""
    return seals.make_seal(SealRequest(agency_uscc=AGENCY_USCC, kind=SealKind.OFFICIAL))


@pytest.fixture(scope="session")
def other_official_seal(seals: SealRegistry) -> SealRecord:
    return seals.make_seal(SealRequest(agency_uscc=OTHER_USCC, kind=SealKind.OFFICIAL))


@pytest.fixture(scope="session")
def trust_services(licence_node: Node) -> TrustServices:
    return node_trust_services(licence_node.timestamps, licence_node.revocation)


def make_registry(
    seals: SealRegistry,
    services: TrustServices,
    *,
    clock: Callable[[], dt.datetime] | None = None,
) -> LicenceRegistry:
    return LicenceRegistry(
        seals=seals, services=services, region=REGION, base_url=BASE_URL, clock=clock
    )


@pytest.fixture(scope="session")
def licences(
    seals: SealRegistry, trust_services: TrustServices, official_seal: SealRecord
) -> LicenceRegistry:
    return make_registry(seals, trust_services)


@pytest.fixture(scope="session")
def licence_trust(licences: LicenceRegistry) -> LicenceTrust:
    return licences.licence_trust()


@pytest.fixture(scope="session")
def node_status(licences: LicenceRegistry) -> StatusSource:
    return licences.status_source()


class GuideCards:
    """Tour guide cards with fresh data each time (their numbers are serials, so any
    number of them can be issued by the same agency)."""

    def __init__(self, licences: LicenceRegistry) -> None:
        self.licences = licences
        self.count = 0

    def data(self, **changes: Any) -> dict[str, Any]:
        self.count += 1
        data = example_data(TOUR_GUIDE)
        data.update(
            card_number=f"D-3501-{self.count:06d}",
            name=f"导游{self.count}",
            id_number=id_number(self.count),
        )
        data.update(changes)
        return data

    def issue(
        self,
        *,
        actor: str = "operator:tests",
        principal: Principal = OPERATOR,
        **options: Any,
    ) -> IssuedLicence:
        data_changes: Mapping[str, Any] = options.pop("data", {})
        return self.licences.issue_licence(
            TOUR_GUIDE,
            AGENCY_USCC,
            self.data(**data_changes),
            actor=actor,
            principal=principal,
            **options,
        )


@pytest.fixture(scope="session")
def guide_cards(licences: LicenceRegistry) -> GuideCards:
    return GuideCards(licences)


def fixed_clock(moment: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: moment


class MovableClock:
    """A clock the test sets; starts at the real time."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta) -> None:
        self.offset += delta
