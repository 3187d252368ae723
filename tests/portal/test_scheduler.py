"""The refresh schedule runs once per instance, whatever the number of workers."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hsm_sim.api import current_signing_context
from portal.cli import cli
from portal.config import SettingOverrides, resolve_settings
from portal.scheduler import ACTOR, RefreshScheduler
from portal.services import Services
from tests.portal.conftest import LicenceWorld
from tests.portal.live_server import start_server

WAIT_S = 20.0


class CountingRefresh:
    """A refresh that counts its calls and records who it ran as."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls = 0
        self.actors: list[str | None] = []
        self.fail_first = fail_first
        self.called = threading.Event()

    def __call__(self) -> dict[str, int]:
        self.calls += 1
        self.actors.append(current_signing_context().actor)
        self.called.set()
        if self.fail_first and self.calls == 1:
            raise RuntimeError("the first refresh fails")
        return {"crls": 0, "ocsp": 1}


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_only_the_lock_holder_refreshes_and_another_takes_over(
    tmp_path: Path,
) -> None:
    first, second = CountingRefresh(), CountingRefresh()
    leader = RefreshScheduler(first, interval=0.05, run_dir=tmp_path / "run")
    follower = RefreshScheduler(second, interval=0.05, run_dir=tmp_path / "run")
    leader.start()
    wait_for(lambda: leader.is_leader and first.calls >= 1, "the leader's refresh")
    follower.start()
    try:
        wait_for(lambda: first.calls >= 4, "more refreshes by the leader")
        assert second.calls == 0 and not follower.is_leader

        leader.stop(timeout=10)
        wait_for(lambda: second.calls >= 1, "the follower to take over")
        assert follower.is_leader
    finally:
        leader.stop(timeout=10)
        follower.stop(timeout=10)
    assert set(first.actors) == set(second.actors) == {ACTOR}


def test_a_failed_refresh_is_logged_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refresh = CountingRefresh(fail_first=True)
    scheduler = RefreshScheduler(refresh, interval=0.05, run_dir=tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="portal.scheduler"):
        scheduler.start()
        try:
            wait_for(lambda: refresh.calls >= 2, "a second refresh")
        finally:
            scheduler.stop(timeout=10)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith("refresh failed\nTraceback (most recent call last)")
        for m in messages
    )
    assert "refresh: 0 crls, 1 ocsp" in messages


def test_a_non_positive_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RefreshScheduler(CountingRefresh(), interval=0, run_dir=tmp_path)


def test_the_server_refreshes_once_with_several_workers(
    instance_home: Path, demo_uscc: str, free_port: int, tmp_path: Path
) -> None:
    server = start_server(
        instance_home,
        free_port,
        tmp_path / "server.log",
        "--workers",
        "3",
        "--refresh-interval",
        "1",
    )
    try:
        assert server.wait_until_healthy()[0] == 200
        wait_for(
            lambda: "refreshes CRLs, OCSP and status lists" in server.log(),
            "a worker to lead",
        )

        # A new certificate has no pre-signed OCSP response until the refresh.
        issued = CliRunner().invoke(
            cli,
            [
                "ca", "issue", "--profile", "seal", "--agency", demo_uscc,
                "--generate", "--label", "seal-s", "--out", str(tmp_path / "s.pem"),
                "--home", str(instance_home),
            ],
        )  # fmt: skip
        assert issued.exit_code == 0, issued.output
        wait_for(lambda: "refresh: 0 crls, 1 ocsp" in server.log(), "it")
    finally:
        assert server.stop() == 0
    log = server.log()
    assert log.count("refreshes CRLs, OCSP and status lists") == 1, log
    assert log.count("refresh: 0 crls, 1 ocsp") == 1, log


def test_the_scheduled_refresh_signs_due_status_lists_and_clears_dead_reservations(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    """A list whose change was not signed (the key store was locked, say) is signed;
    a reservation a killed process left more than an hour ago is deleted, its index
    given back. Each once: the next refresh finds nothing to do."""
    guide = licence_world.guide["identifier"]
    with sqlite3.connect(licence_home / "yinxin.sqlite3") as db:
        db.execute("UPDATE licence_status_list SET version = version + 1")
        db.execute(
            "UPDATE licence SET state = 'pending', created_at = ? WHERE identifier = ?",
            (
                (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime(
                    "%Y-%m-%d %H:%M:%S.000000"
                ),
                guide,
            ),
        )
    services = Services(
        resolve_settings(SettingOverrides(home=licence_home), environ={})
    )
    try:
        first = services.scheduled_refresh()
        second = services.scheduled_refresh()
        remaining = [r.identifier for r in services.licence_registry().find_licences()]
    finally:
        services.close()
    assert (first["status_lists"], first["discarded_licences"]) == (1, 1)
    assert (second["status_lists"], second["discarded_licences"]) == (0, 0)
    assert guide not in remaining and len(remaining) == 2


def test_the_scheduled_refresh_fails_stamps_a_dead_process_left_pending(
    instance_home: Path,
) -> None:
    """A stamp-log entry still pending after an hour was left by a worker that died
    mid-stamp: the schedule marks it failed ("abandoned"), once; a young one stays."""
    started = {
        "old": dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
        "young": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    }
    with sqlite3.connect(instance_home / "yinxin.sqlite3") as db:
        (seal_id,) = db.execute("SELECT id FROM seal ORDER BY id LIMIT 1").fetchone()
        for name, at in started.items():
            db.execute(
                "INSERT INTO stamp_log (seal_id, principal_kind, principal_id, "
                "document_sha256, document_bytes, level, outcome, started_at) "
                "VALUES (?, 'client', ?, ?, 1, 'B-B', 'pending', ?)",
                (seal_id, name, "0" * 64, at.strftime("%Y-%m-%d %H:%M:%S.000000")),
            )
    services = Services(
        resolve_settings(SettingOverrides(home=instance_home), environ={})
    )
    try:
        first = services.scheduled_refresh()
        second = services.scheduled_refresh()
    finally:
        services.close()
    assert (first["abandoned_stamps"], second["abandoned_stamps"]) == (1, 0)
    with sqlite3.connect(instance_home / "yinxin.sqlite3") as db:
        rows = db.execute(
            "SELECT principal_id, outcome, error FROM stamp_log ORDER BY id"
        ).fetchall()
    assert rows == [("old", "failed", "abandoned"), ("young", "pending", None)]
