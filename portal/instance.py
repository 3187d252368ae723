"""`yinxin init`: make a complete instance, or leave nothing behind.

An instance is its config file, its database (schema made by the migrations), its HSM
token with the user and SO PINs (the SO PIN written apart, to be moved offline: only
`yinxin hsm unlock` needs it, the server never), the region's audit key with a first signed audit
checkpoint, and — when a ceremony file is given (`--demo` gives the demo one) — the
region's CA hierarchy made by the key ceremony, with a copy of the ceremony file kept
as `ceremony.toml`. With `--demo` the demo agency also gets an official seal (公章),
granted to its API client, so that it can issue licences and stamp at once. The
config file is written last: an instance directory with a
config file is a finished instance. If any step fails, everything this run made is
removed again, so the same command can simply be run again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.api import KeyAlgorithm, KeyStore, KeyUsage, signing_context
from hsm_sim.audit import SqlAuditLog
from hsm_sim.errors import ErrorCategory, PinMissingError
from hsm_sim.soft_token import init_soft_token
from hsm_sim.spec import SoftTokenSpec, open_keystore, parse_keystore_spec
from pki.ceremony import CeremonyResult, run_ceremony
from pki.ceremony_config import (
    DEMO_CEREMONY_PATH,
    CeremonyConfig,
    parse_ceremony_config,
)
from pki.errors import CeremonyConfigError
from pki.ra import RegistrationAuthority
from pki.registry import ClientScope, add_api_client, add_staff_user, register_agency
from pki.uscc import compute_uscc_check_character
from portal.config import (
    CONFIG_KEYS,
    DEFAULT_REFRESH_INTERVAL,
    SO_PIN_FILE_NAME,
    USER_PIN_FILE_NAME,
    Settings,
    default_database_url,
    default_hsm_spec,
)
from portal.db import (
    check_database,
    current_revision,
    make_engine,
    migration_config,
    session_factory,
    upgrade_database,
)
from portal.errors import InstanceError, InstanceExistsError, one_line
from portal.services import (
    build_certificate_authority,
    build_revocation_service,
)
from seal.image import SealKind
from seal.lifecycle import SealRegistry, SealRequest

__all__ = [
    "CeremonySource",
    "DemoRecords",
    "InitResult",
    "InstanceInitError",
    "create_hierarchy",
    "init_instance",
    "read_ceremony_file",
    "write_secret_file",
]

logger = logging.getLogger(__name__)

INIT_ACTOR = "yinxin-init"
CLIENT_SECRET_FILE_NAME = "demo-api-client.secret"
STAFF_PASSWORD_FILE_NAME = "demo-staff.password"
DEMO_DATA_FILE = Path(__file__).with_name("demo.toml")


class InstanceInitError(InstanceError):
    """A step of `yinxin init` failed; the category is that of the underlying error."""

    def __init__(self, message: str, category: ErrorCategory) -> None:
        super().__init__(message)
        self.category = category


@dataclasses.dataclass(frozen=True)
class DemoRecords:
    agency_name: str
    agency_uscc: str
    client_id: str
    client_secret_file: Path
    staff_username: str
    staff_password_file: Path
    official_seal_id: str | None = None  # made when the instance has a CA
    official_seal_code: str | None = None


@dataclasses.dataclass(frozen=True)
class InitResult:
    home: Path
    config_file: Path
    database: str  # password masked
    hsm: str
    region: str
    public_base_url: str
    audit_key_label: str
    audit_entries: int
    user_pin_file: Path | None
    so_pin_file: Path | None
    demo: DemoRecords | None
    ceremony: CeremonyResult | None = None
    ceremony_file: Path | None = None  # the instance's copy
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CeremonySource:
    """A ceremony file as read: its text (kept verbatim in the instance) and its meaning."""

    path: Path
    text: str
    config: CeremonyConfig


def read_ceremony_file(path: Path) -> CeremonySource:
    """Read and check a ceremony file; CeremonyConfigError says what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CeremonyConfigError(
            f"cannot read the ceremony file {path}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise CeremonyConfigError(
            f"the ceremony file {path} is not UTF-8 text"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CeremonyConfigError(
            f"the ceremony file {path} is not valid TOML: {exc}"
        ) from None
    return CeremonySource(path=path, text=text, config=parse_ceremony_config(document))


def create_hierarchy(
    settings: Settings,
    source: CeremonySource,
    *,
    keystore: KeyStore,
    sessions: sessionmaker[Session],
    actor: str,
) -> CeremonyResult:
    """Run the key ceremony, then keep the ceremony file in the instance.

    The ceremony refuses (CeremonyError) when the node already has a hierarchy, before
    anything is made or copied; if it fails midway it removes what it made.
    """
    result = _run_ceremony(
        settings, source, keystore=keystore, sessions=sessions, actor=actor
    )
    try:
        _keep_ceremony_copy(settings, source)
    except OSError as exc:
        raise InstanceInitError(
            f"the CA hierarchy was made, but its ceremony file could not be copied to "
            f"{settings.ceremony_file} ({_describe_os_error(exc)}); copy "
            f"{source.path} there by hand",
            ErrorCategory.UNAVAILABLE,
        ) from exc
    return result


def _run_ceremony(
    settings: Settings,
    source: CeremonySource,
    *,
    keystore: KeyStore,
    sessions: sessionmaker[Session],
    actor: str,
) -> CeremonyResult:
    ca = build_certificate_authority(
        keystore=keystore, sessions=sessions, settings=settings, config=source.config
    )
    with signing_context(actor=actor):
        return run_ceremony(source.config, ca=ca)


def _keep_ceremony_copy(settings: Settings, source: CeremonySource) -> None:
    """Keep the ceremony file, verbatim, as the instance's `ceremony.toml`."""
    partial = settings.ceremony_file.with_name(settings.ceremony_file.name + ".partial")
    partial.write_text(source.text, encoding="utf-8")
    os.replace(partial, settings.ceremony_file)


def write_secret_file(
    path: Path, secret: str, *, replace: bool = False, private_directory: bool = True
) -> None:
    """Write `secret` to a file only its owner can read; with `private_directory`, in
    a directory only they can enter (made so). Never through a symlink."""
    if private_directory:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    flags |= os.O_TRUNC if replace else os.O_EXCL
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(secret + "\n")
    os.chmod(path, 0o600)


def _new_pin() -> str:
    return secrets.token_urlsafe(24)


class _Undo:
    """What this run has made, to be unmade in reverse order if a later step fails."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> None:
        self._actions.append((what, action))

    def run(self) -> list[str]:
        """Undo everything; the things that could not be undone, by name."""
        left_behind = []
        for what, action in reversed(self._actions):
            try:
                action()
            except Exception:
                logger.exception("init clean-up could not remove %s", what)
                left_behind.append(what)
        self._actions.clear()
        return left_behind


def _remove_path(path: Path) -> Callable[[], None]:
    def remove() -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    return remove


def _make_directory(path: Path, undo: _Undo, mode: int = 0o755) -> None:
    """Create `path` and its missing parents, remembering each one made for the undo."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    for made in reversed(missing):
        undo.push(str(made), _remove_path(made))


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return Path(parsed.database)
    return None


def _check_nothing_there(settings: Settings) -> None:
    if settings.config_file.exists():
        raise InstanceExistsError(
            f"an instance already exists at {settings.home} ({settings.config_file.name} "
            "is there); init leaves it as it is"
        )
    if settings.ceremony_file.exists():
        raise InstanceExistsError(
            f"{settings.ceremony_file} already exists; init will not replace the record "
            "of another instance's ceremony"
        )
    database_file = _sqlite_file(settings.database_url)
    if database_file is not None and database_file.exists():
        raise InstanceExistsError(
            f"the SQLite database {database_file} already exists; init will not reuse it"
        )
    spec = parse_keystore_spec(settings.hsm)
    token_directory = spec.directory if isinstance(spec, SoftTokenSpec) else None
    if token_directory is not None and _holds_anything(token_directory):
        raise InstanceExistsError(
            f"the HSM token directory {token_directory} is not empty; init will not reuse it"
        )


def _holds_anything(path: Path) -> bool:
    """Whether `path` is a file, or a directory with something in it."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _config_text(settings: Settings) -> tuple[str, list[str]]:
    """The config file for `settings`: only what differs from the defaults, no secrets."""
    notes = []
    keys = ", ".join(CONFIG_KEYS)
    about = textwrap.wrap(
        f"Keys: {keys}. Flags and YINXIN_* environment variables override them "
        "(README.md). Secrets never go here: the user PIN lives in secrets/.",
        width=84,
    )
    lines = [
        "# Yinxin instance configuration, written by `yinxin init`.",
        *(f"# {line}" for line in about),
        f"region = {json.dumps(settings.region, ensure_ascii=False)}",
        "# Every certificate's AIA and CRL distribution point name this URL.",
        f"public_base_url = {json.dumps(settings.public_base_url)}",
    ]
    if settings.refresh_interval != DEFAULT_REFRESH_INTERVAL:
        lines.append(f"refresh_interval = {settings.refresh_interval}")
    if settings.database_url != default_database_url(settings.home):
        url = make_url(settings.database_url)
        if url.password:
            url = url.set(password=None)
            notes.append(
                "the database password was not written to the config file; give it "
                "with PGPASSWORD or ~/.pgpass"
            )
        rendered = url.render_as_string(hide_password=False)
        lines.append(f"database_url = {json.dumps(rendered, ensure_ascii=False)}")
    if settings.hsm != default_hsm_spec(settings.home):
        lines.append(f"hsm = {json.dumps(settings.hsm, ensure_ascii=False)}")
    return "\n".join(lines) + "\n", notes


def _load_demo_data() -> dict[str, dict[str, str]]:
    return tomllib.loads(DEMO_DATA_FILE.read_text(encoding="utf-8"))


def _demo_uscc(agency: dict[str, str], region: str) -> str:
    body = (
        agency["registration_authority"]
        + agency["category"]
        + region
        + agency["organisation_code"]
    )
    return body + compute_uscc_check_character(body)


def _register_demo(settings: Settings, engine: Engine, undo: _Undo) -> DemoRecords:
    data = _load_demo_data()
    uscc = _demo_uscc(data["agency"], settings.region)
    staff_password = secrets.token_urlsafe(18)
    with session_factory(engine)() as session, session.begin():
        agency = register_agency(
            session, name=data["agency"]["name"], uscc=uscc, region=settings.region
        )
        # Every scope, so that the demo shows everything the API does.
        client, client_secret = add_api_client(
            session,
            agency_uscc=agency.uscc,
            name=data["api_client"]["name"],
            scopes=list(ClientScope),
        )
        staff = add_staff_user(
            session,
            username=data["staff_user"]["username"],
            password=staff_password,
            role=data["staff_user"]["role"],
            agency_uscc=agency.uscc,
        )
    secret_file = settings.secrets_dir / CLIENT_SECRET_FILE_NAME
    password_file = settings.secrets_dir / STAFF_PASSWORD_FILE_NAME
    for path, secret in ((secret_file, client_secret), (password_file, staff_password)):
        write_secret_file(path, secret)
        undo.push(str(path), _remove_path(path))
    return DemoRecords(
        agency_name=agency.name,
        agency_uscc=agency.uscc,
        client_id=client.client_id,
        client_secret_file=secret_file,
        staff_username=staff.username,
        staff_password_file=password_file,
    )


def _make_demo_seal(
    settings: Settings,
    config: CeremonyConfig,
    *,
    keystore: KeyStore,
    engine: Engine,
    demo: DemoRecords,
    undo: _Undo,
    pkcs11: bool,
) -> DemoRecords:
    """The demo agency's official seal, granted to its API client."""
    ca = build_certificate_authority(
        keystore=keystore,
        sessions=session_factory(engine),
        settings=settings,
        config=config,
    )
    seals = SealRegistry(
        ra=RegistrationAuthority(
            ca=ca,
            keystore=keystore,
            sessions=ca.sessions,
            organization=config.organization,
        ),
        revocation=build_revocation_service(ca, config),
    )
    record = seals.make_seal(
        SealRequest(agency_uscc=demo.agency_uscc, kind=SealKind.OFFICIAL),
        actor=INIT_ACTOR,
    )
    if pkcs11:
        undo.push(
            f"the key {record.key_label!r}", _destroy_key(keystore, record.key_label)
        )
    seals.grant(record.id, client_id=demo.client_id)
    return dataclasses.replace(
        demo, official_seal_id=record.id, official_seal_code=record.es_id
    )


def _downgrade_to_empty(engine: Engine) -> Callable[[], None]:
    """Undo the migrations on a database that was empty, version table included."""

    def downgrade() -> None:
        if current_revision(engine) is None:
            return
        config = migration_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
            version_table = MigrationContext.configure(connection).version_table
            connection.execute(text(f'DROP TABLE IF EXISTS "{version_table}"'))

    return downgrade


def _destroy_key(keystore: KeyStore, label: str) -> Callable[[], None]:
    return lambda: keystore.destroy_key(label)


@contextmanager
def _step(name: str, undo: _Undo) -> Iterator[None]:
    """Run one step; on failure undo the run and say which step failed."""
    try:
        yield
    except Exception as exc:
        left_behind = undo.run()
        category = getattr(exc, "category", None)
        reason = one_line(exc)
        if isinstance(exc, OSError) and not isinstance(category, ErrorCategory):
            # A file or directory that cannot be made: the environment, not a bug.
            category = ErrorCategory.UNAVAILABLE
            reason = _describe_os_error(exc)
        if not isinstance(category, ErrorCategory):
            raise
        aftermath = (
            f"; could not remove: {', '.join(left_behind)}"
            if left_behind
            else "; nothing was left behind"
        )
        raise InstanceInitError(
            f"init failed while {name}: {reason}{aftermath}", category
        ) from exc


def _describe_os_error(error: OSError) -> str:
    reason = (error.strerror or type(error).__name__).lower()
    return f"{reason}: {error.filename}" if error.filename else reason


def _so_pin_path(
    settings: Settings, so_pin_file: Path | None, spec: object
) -> Path | None:
    """Where init writes the soft token's SO PIN: `so_pin_file`, else
    <home>/move-offline/hsm-so.pin; checked before anything is made."""
    if not isinstance(spec, SoftTokenSpec):
        if so_pin_file is not None:
            raise InstanceError(
                "a PKCS#11 token's SO PIN is set outside Yinxin; --so-pin-file is for "
                "the software HSM"
            )
        return None
    if so_pin_file is None:
        return settings.offline_dir / SO_PIN_FILE_NAME
    path = so_pin_file.expanduser().absolute()
    if path.exists() or path.is_symlink():
        raise InstanceExistsError(f"{path} already exists; init will not overwrite it")
    if not path.parent.is_dir():
        raise InstanceError(
            f"cannot write the SO PIN to {path}: the directory {path.parent} does not "
            "exist"
        )
    return path


def init_instance(
    settings: Settings,
    *,
    demo: bool = False,
    ceremony_file: Path | None = None,
    so_pin_file: Path | None = None,
) -> InitResult:
    """Create the instance `settings` describe; InstanceExistsError if there is one.

    The CA ceremony runs from `ceremony_file` (with `demo`, the demo ceremony by
    default); without one the instance has no CA until `yinxin ca ceremony`. A soft
    token's SO PIN is written to `so_pin_file` (which must not exist) or, by default,
    to <home>/move-offline/hsm-so.pin: either way, apart from what the server reads.
    """
    if ceremony_file is None and demo:
        ceremony_file = DEMO_CEREMONY_PATH
    ceremony_source = read_ceremony_file(ceremony_file) if ceremony_file else None
    _check_nothing_there(settings)
    spec = parse_keystore_spec(settings.hsm)
    if not isinstance(spec, SoftTokenSpec) and not settings.hsm_pin:
        raise PinMissingError(
            "a PKCS#11 token is initialised outside Yinxin; give its user PIN in YINXIN_HSM_PIN"
        )
    so_pin_path = _so_pin_path(settings, so_pin_file, spec)
    undo = _Undo()
    database_file = _sqlite_file(settings.database_url)
    with _step("creating the instance directory", undo):
        _make_directory(settings.home, undo)
        if database_file is not None:
            _make_directory(database_file.parent, undo)
            for suffix in ("", "-wal", "-shm", "-journal"):
                sibling = database_file.with_name(database_file.name + suffix)
                undo.push(str(sibling), _remove_path(sibling))
    engine: Engine | None = None
    audit_log: SqlAuditLog | None = None
    keystore: KeyStore | None = None
    try:
        with _step("checking the database", undo):
            engine = make_engine(settings.database_url)
            check_database(engine)
            if current_revision(engine) is not None:
                raise InstanceExistsError(
                    f"the database {settings.describe_database()} already holds a Yinxin "
                    "schema; give init an empty database"
                )

        user_pin_file = None
        pin_notes: list[str] = []
        if isinstance(spec, SoftTokenSpec):
            assert so_pin_path is not None
            user_pin, so_pin = _new_pin(), _new_pin()
            with _step("writing the PIN files", undo):
                user_pin_file = settings.secrets_dir / USER_PIN_FILE_NAME
                _make_directory(settings.secrets_dir, undo, mode=0o700)
                write_secret_file(user_pin_file, user_pin)
                undo.push(str(user_pin_file), _remove_path(user_pin_file))
                own_directory = so_pin_file is None
                if own_directory:
                    _make_directory(so_pin_path.parent, undo, mode=0o700)
                write_secret_file(so_pin_path, so_pin, private_directory=own_directory)
                undo.push(str(so_pin_path), _remove_path(so_pin_path))
                pin_notes.append(
                    f"move the SO PIN file {so_pin_path} off this machine now (to a "
                    "safe or an offline medium): only `yinxin hsm unlock "
                    "--so-pin-file FILE` needs it, and the server never reads it"
                )
            with _step("creating the HSM token", undo):
                _make_directory(spec.directory.parent, undo)
                if spec.directory.exists():
                    undo.push(
                        f"the token in {spec.directory}",
                        _clear_directory(spec.directory),
                    )
                else:
                    undo.push(str(spec.directory), _remove_path(spec.directory))
                init_soft_token(
                    spec.directory,
                    user_pin=user_pin,
                    so_pin=so_pin,
                    label=f"yinxin-{settings.region}",
                )
        else:
            user_pin = settings.hsm_pin or ""

        with _step("opening the HSM token", undo):
            audit_log = SqlAuditLog(engine)
            keystore = open_keystore(settings.hsm, pin=user_pin, audit=audit_log)

        with _step("migrating the database", undo):
            if database_file is None:
                undo.push(
                    f"the schema in {settings.describe_database()}",
                    _downgrade_to_empty(engine),
                )
            upgrade_database(engine)
            if database_file is not None:
                # It holds the hashes of client secrets and staff passwords.
                os.chmod(database_file, 0o600)

        audit_label = settings.audit_key_label
        with _step(f"generating the audit key {audit_label!r}", undo):
            keystore.generate_key(
                audit_label, KeyAlgorithm.EC_P256, frozenset({KeyUsage.AUDIT})
            )
            if not isinstance(spec, SoftTokenSpec):
                undo.push(
                    f"the key {audit_label!r}", _destroy_key(keystore, audit_label)
                )
        with (
            _step("signing the first audit checkpoint", undo),
            signing_context(actor=INIT_ACTOR, operation="audit-checkpoint"),
        ):
            audit_log.write_checkpoint(keystore, audit_label)

        ceremony = None
        if ceremony_source is not None:
            with _step("running the CA ceremony", undo):
                for made in (
                    settings.ceremony_file,
                    settings.ceremony_file.with_name(
                        settings.ceremony_file.name + ".partial"
                    ),
                ):
                    undo.push(str(made), _remove_path(made))
                ceremony = _run_ceremony(
                    settings,
                    ceremony_source,
                    keystore=keystore,
                    sessions=session_factory(engine),
                    actor=INIT_ACTOR,
                )
                if not isinstance(spec, SoftTokenSpec):
                    for label in ceremony.key_labels:
                        undo.push(f"the key {label!r}", _destroy_key(keystore, label))
                _keep_ceremony_copy(settings, ceremony_source)

        demo_records = None
        if demo:
            with _step("registering the demo agency, API client and staff user", undo):
                demo_records = _register_demo(settings, engine, undo)
            if ceremony_source is not None:
                with (
                    _step("making the demo agency's official seal", undo),
                    signing_context(actor=INIT_ACTOR),
                ):
                    demo_records = _make_demo_seal(
                        settings,
                        ceremony_source.config,
                        keystore=keystore,
                        engine=engine,
                        demo=demo_records,
                        undo=undo,
                        pkcs11=not isinstance(spec, SoftTokenSpec),
                    )
        audit_entries = audit_log.entry_count()

        with _step("writing the config file", undo):
            config_text, notes = _config_text(settings)
            notes = pin_notes + notes
            if ceremony is None:
                notes.append(
                    "this instance has no CA hierarchy yet; make it with: yinxin ca "
                    f"ceremony --config FILE (the demo's is {DEMO_CEREMONY_PATH})"
                )
            partial = settings.config_file.with_name(
                settings.config_file.name + ".partial"
            )
            undo.push(str(partial), _remove_path(partial))
            partial.write_text(config_text, encoding="utf-8")
            os.replace(partial, settings.config_file)
    finally:
        if keystore is not None:
            keystore.close()
        if audit_log is not None:
            audit_log.close()
        if engine is not None:
            engine.dispose()

    return InitResult(
        home=settings.home,
        config_file=settings.config_file,
        database=settings.describe_database(),
        hsm=settings.hsm,
        region=settings.region,
        public_base_url=settings.public_base_url,
        audit_key_label=audit_label,
        audit_entries=audit_entries,
        user_pin_file=user_pin_file,
        so_pin_file=so_pin_path,
        demo=demo_records,
        ceremony=ceremony,
        ceremony_file=settings.ceremony_file if ceremony is not None else None,
        notes=tuple(notes),
    )


def _clear_directory(directory: Path) -> Callable[[], None]:
    def clear() -> None:
        for entry in directory.iterdir():
            _remove_path(entry)()

    return clear
