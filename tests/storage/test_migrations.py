"""The Alembic migrations: they make exactly the schema the models declare, on SQLite
and PostgreSQL, run more than once safely, go down and up again, and ship in the wheel."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hsm_sim.storage import Base
from portal.db import (
    MIGRATIONS_DIR,
    MODEL_MODULES,
    current_revision,
    head_revision,
    make_engine,
    migration_config,
    target_metadata,
    upgrade_database,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("hsm_sim", "pki", "seal", "certs", "portal")


def import_every_project_module() -> None:
    """Import every module of every package, so any model declared anywhere is on
    Base.metadata whatever tests ran before (the migration scripts themselves excepted)."""
    for package in PACKAGES:
        if importlib.util.find_spec(package) is None:
            continue
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not module.name.startswith("portal.migrations"):
                importlib.import_module(module.name)


def test_the_migrated_schema_matches_the_models(database_url: str):
    import_every_project_module()
    upgrade_database(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, target_metadata())
    finally:
        engine.dispose()
    assert differences == []


def test_upgrading_twice_is_harmless_and_reaches_the_head(database_url: str):
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade_database(database_url)
        upgrade_database(engine)
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {"alembic_version", *target_metadata().tables} <= tables
    finally:
        engine.dispose()


def test_downgrade_to_nothing_then_upgrade_again(database_url: str):
    upgrade_database(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            config = migration_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade_database(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_every_model_module_is_known_to_the_migrations():
    """A model module missing from MODEL_MODULES would be invisible to autogenerate."""
    import_every_project_module()
    declaring = {mapper.class_.__module__ for mapper in Base.registry.mappers}
    assert declaring <= set(MODEL_MODULES)


@pytest.mark.slow
def test_a_built_wheel_carries_the_migrations_and_they_run(tmp_path: Path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "README.md", source)
    for package in ("hsm_sim", "pki", "seal", "certs", "portal"):
        if (REPO / package).is_dir():
            shutil.copytree(
                REPO / package, source / package,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("yinxin-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"portal/migrations/{p.relative_to(MIGRATIONS_DIR).as_posix()}"
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and p.suffix in {".py", ".mako"}
    }
    assert expected <= shipped

    installed = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
         installed, wheel],
        check=True,
        capture_output=True,
    )
    database = tmp_path / "instance" / "yinxin.sqlite3"
    script = (
        "import portal.db, sys\n"
        f"assert portal.db.__file__.startswith({str(installed)!r}), portal.db.__file__\n"
        f"portal.db.upgrade_database({f'sqlite:///{database}'!r})\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=tmp_path, env=environment,
        capture_output=True,
    )
    engine = make_engine(f"sqlite:///{database}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
