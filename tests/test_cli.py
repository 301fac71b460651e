"""The `ispqueue` command: bad input exits 2 with one stderr line and writes nothing; the job
commands do what they say against a real data store."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

from ispqueue import migrations
from ispqueue.cli import main
from ispqueue.config import DEFAULT_SCHEDULE
from ispqueue.ledger import NewJob
from ispqueue.observability.logs import setup_logging, stop_logging
from ispqueue.runtime import Runtime

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)

# A child process that also knows a throw-away router type, for what only router types do.
PROBE_SCRIPT = textwrap.dedent("""\
    import sys
    import ispqueue.jobs
    from ispqueue.registry import registry
    registry.register("router.cli_probe", queue="default", timeout=5, needs_router=True,
                      legacy=["CliProbeJob"])(lambda ctx: None)
    from ispqueue.cli import main
    main(args=sys.argv[1:], prog_name="ispqueue")
""")


def config_text(tmp_path: Path, extra: str = "", schedule: str = "") -> str:
    """The installation of conftest's `config` fixture, as a file the CLI can read."""
    schedule_off = "".join(f'"{name}" = false\n' for name in DEFAULT_SCHEDULE)
    return (f'[ispqueue]\ndata_dir = "{tmp_path / "data"}"\n\n'
            f"[schedule]\n{schedule_off}{schedule}\n"
            f'[logging]\nfile = "{tmp_path / "logs" / "ispqueue.jsonl"}"\nlevel = "DEBUG"\n\n'
            + textwrap.dedent(extra))


@pytest.fixture(autouse=True)
def no_sinks_left() -> Iterator[None]:
    yield
    stop_logging()  # the CLI sets up file sinks in this process


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(config_text(tmp_path), encoding="utf-8")
    return path


@pytest.fixture
def cli(conf: Path) -> Callable[..., Result]:
    """Run `ispqueue --config conf ARGS` in this process."""
    def run(*args: str, config: Path | None = None) -> Result:
        return CliRunner().invoke(main, ["--config", str(config or conf), *args],
                                  catch_exceptions=False)
    return run


@pytest.fixture
def probe_cli(conf: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI in a child process that also has the `router.cli_probe` type."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", PROBE_SCRIPT, "--config", str(conf), *args],
                              capture_output=True, text=True, timeout=60, check=False)
    return run


def count(tmp_path: Path, table: str = "job") -> int:
    with sqlite3.connect(tmp_path / "data" / "ispqueue.db") as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def assert_bad_input(result: Result | subprocess.CompletedProcess[str], *named: str) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line naming each of `named`."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def json_out(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def drive(rt: Runtime, status: str, *, seconds: float = 1.0, tries: int = 1,
          args: dict[str, Any] | None = None, queue: str = "default") -> int:
    """A canary row brought to `status` through the ledger; the clock moves `seconds`."""
    ledger = rt.ledger
    job, _ = ledger.insert(NewJob(type="system.canary", args=args or {"queue": queue},
                                  queue=queue, priority=0, tries=tries, timeout=60,
                                  source="api"))
    if status == "cancelled":
        ledger.cancel(job.id)
        return job.id
    if status == "queued":
        return job.id
    claimed = ledger.claim(job.id)
    with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)):
        if status == "succeeded":
            ledger.succeed(claimed, {"ok": True})
        elif status == "failed":
            ledger.fail(claimed, RuntimeError("probe broke"))
        elif status == "retrying":
            ledger.retry_or_fail(claimed, RuntimeError("flaky"), 0)
    return job.id


# -- bad input: exit 2, one line, nothing written -----------------------------------------------


@pytest.fixture
def installed(cli: Callable[..., Result], tmp_path: Path) -> Callable[..., Result]:
    assert cli("init").exit_code == 0
    cli("enqueue", "system.canary")
    assert count(tmp_path) == 1
    return cli


@pytest.mark.parametrize("args, named", [
    (["enqueue", "system.nosuch"], ["unknown job type 'system.nosuch'"]),
    (["enqueue", "NoSuchLegacyJob"], ["unknown job type 'NoSuchLegacyJob'"]),
    (["enqueue", "system.canary", "--arg", "colour=red"],
     ["system.canary: unknown argument 'colour'"]),
    (["enqueue", "system.canary", "--arg", "hold_seconds=abc"],
     ["argument hold_seconds: expected float, got 'abc'"]),
    (["enqueue", "system.canary", "--arg", "hold_seconds=99"],
     ["argument hold_seconds: must be at most 60"]),
    (["enqueue", "system.canary", "--arg", "queue=bulk"], ["argument queue: expected one of"]),
    (["enqueue", "system.canary", "--args-json", "{hold: 1}"], ["--args-json is not valid JSON"]),
    (["enqueue", "system.canary", "--args-json", "[1, 2]"], ["--args-json must be a JSON object"]),
    (["enqueue", "system.canary", "--args-json", '{"hold_seconds": true}'],
     ["argument hold_seconds: expected float, got True"]),
    (["enqueue", "system.canary", "--arg", "hold_seconds"], ["--arg expects KEY=VALUE",
                                                             "'hold_seconds'"]),
    (["enqueue", "system.canary", "--arg", "=5"], ["--arg expects KEY=VALUE"]),
    (["enqueue", "system.canary", "--delay", "-5"], ["delay must not be negative"]),
    (["enqueue", "system.canary", "--delay=-0.5"], ["delay must not be negative"]),
    (["enqueue", "system.canary", "--delay", "soon"], ["--delay"]),
    (["enqueue", "system.canary", "--at", "2026-12-04T10:00:00"], ["--at: give a timezone"]),
    (["enqueue", "system.canary", "--at", "tomorrow"], ["--at: not an ISO-8601 time"]),
    (["enqueue", "system.canary", "--delay", "5", "--at", "2026-12-04T10:00:00+06:00"],
     ["either a delay or a time, not both"]),
    (["enqueue", "system.canary", "--router", "core-1"],
     ["system.canary does not take a router"]),
    (["enqueue", "system.canary", "--priority", "high"], ["--priority"]),
    (["enqueue"], ["Missing argument 'TYPE'"]),
    (["jobs", "list", "--status", "done"], ["--status", "'done'"]),
    (["jobs", "list", "--since", "yesterday"], ["expected a time span", "'yesterday'"]),
    (["jobs", "list", "--since", "3x"], ["'3x'"]),
    (["jobs", "list", "--limit", "0"], ["--limit"]),
    (["jobs", "list", "--type", "system.nosuch"], ["unknown job type 'system.nosuch'"]),
    (["jobs", "prune", "--older-than", "3x"], ["expected an age like 30d", "'3x'"]),
    (["jobs", "prune"], ["--older-than"]),
    (["jobs", "show", "999"], ["no job with id 999"]),
    (["jobs", "show", "one"], ["'one'"]),
    (["jobs", "retry", "999"], ["no job with id 999"]),
    (["jobs", "cancel", "999"], ["no job with id 999"]),
    (["jobs", "retry", "1"], ["job 1 is queued; only failed or cancelled jobs retry"]),
    (["stats", "--since", "3x"], ["'3x'"]),
    (["logs", "--level", "LOUD"], ["--level"]),
    (["logs", "--since", "3x"], ["'3x'"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
])
def test_bad_input_exits_2_and_writes_nothing(installed: Callable[..., Result], tmp_path: Path,
                                              args: list[str], named: list[str]) -> None:
    events = count(tmp_path, "job_event")
    assert_bad_input(installed(*args), *named)
    assert count(tmp_path) == 1
    assert count(tmp_path, "job_event") == events


def test_unknown_router(installed: Callable[..., Result], tmp_path: Path, conf: Path,
                        probe_cli: Callable[..., Any]) -> None:
    with conf.open("a", encoding="utf-8") as handle:
        handle.write('[[routers]]\nname = "core-1"\nhost = "10.0.0.1"\nusername = "api"\n'
                     'password = "pw"\n')
    assert_bad_input(probe_cli("enqueue", "router.cli_probe", "--router", "edge-9"),
                     str(conf), "no router named 'edge-9'")
    assert_bad_input(probe_cli("enqueue", "router.cli_probe"),
                     "router.cli_probe needs a router (--router NAME)")
    assert count(tmp_path) == 1


def test_disabled_router(installed: Callable[..., Result], tmp_path: Path, conf: Path,
                         probe_cli: Callable[..., Any]) -> None:
    with conf.open("a", encoding="utf-8") as handle:
        handle.write('[[routers]]\nname = "core-1"\nhost = "10.0.0.1"\nusername = "api"\n'
                     'password = "pw"\nenabled = false\n')
    assert_bad_input(probe_cli("enqueue", "router.cli_probe", "--router", "core-1"),
                     "router 'core-1' is disabled")
    assert count(tmp_path) == 1


def test_legacy_name_enqueues_with_a_warning(installed: Callable[..., Result], tmp_path: Path,
                                             conf: Path, probe_cli: Callable[..., Any]) -> None:
    with conf.open("a", encoding="utf-8") as handle:
        handle.write('[[routers]]\nname = "core-1"\nhost = "10.0.0.1"\nusername = "api"\n'
                     'password = "pw"\n')
    done = probe_cli("enqueue", "CliProbeJob", "--router", "core-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\n"
    assert done.stderr == "warning: CliProbeJob is a legacy name; use router.cli_probe\n"
    with sqlite3.connect(tmp_path / "data" / "ispqueue.db") as db:
        assert db.execute("SELECT type, router FROM job WHERE id = 2").fetchone() == (
            "router.cli_probe", "core-1")


@pytest.mark.parametrize("args, named", [
    (["enqueue", "system.canary", "--arg", "nothing"], ["--arg expects KEY=VALUE"]),
    (["enqueue", "system.canary", "--args-json", "nope"], ["--args-json is not valid JSON"]),
    (["enqueue", "system.canary", "--at", "2026-12-04 10:00"], ["--at: give a timezone"]),
])
def test_bad_input_before_init_creates_nothing(cli: Callable[..., Result], tmp_path: Path,
                                               args: list[str], named: list[str]) -> None:
    assert_bad_input(cli(*args), *named)
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "logs").exists()


def test_command_before_init_asks_for_init_and_creates_nothing(cli: Callable[..., Result],
                                                                tmp_path: Path) -> None:
    assert_bad_input(cli("jobs", "list"), "run `ispqueue init`")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("extra, named", [
    ("[queue]\nbogus = 1\n", "[queue] bogus: unknown key"),
    ('[[routers]]\nname = "r"\nhost = "h"\nusername = "u"\nport = 99999\npassword = "x"\n',
     "[[routers]] 'r' port"),
    ("[ispqueue\n", "not valid TOML"),
])
def test_bad_config_file(tmp_path: Path, extra: str, named: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(tmp_path, extra), encoding="utf-8")
    for args in (["init"], ["types"], ["enqueue", "system.canary"], ["jobs", "list"]):
        result = CliRunner().invoke(main, ["--config", str(bad), *args], catch_exceptions=False)
        assert_bad_input(result, str(bad), named)
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("extra, schedule, named", [
    ('[jobs."system.nosuch"]\ntries = 2\n', "", '[jobs."system.nosuch"]: unknown job type'),
    ("", '"system.nosuch" = "0 * * * *"\n', '[schedule] "system.nosuch": unknown job type'),
])
def test_config_naming_an_unknown_job_type(tmp_path: Path, extra: str, schedule: str,
                                           named: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(tmp_path, extra, schedule), encoding="utf-8")
    for args in (["types"], ["enqueue", "system.canary"], ["jobs", "list"], ["stats"]):
        result = CliRunner().invoke(main, ["--config", str(bad), *args], catch_exceptions=False)
        assert_bad_input(result, str(bad), named)


def test_init_rejects_a_config_naming_an_unknown_job_type(tmp_path: Path) -> None:
    # The daemon refuses this file; init is where the operator should hear about it.
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(tmp_path, '[jobs."system.nosuch"]\ntries = 2\n'),
                   encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(bad), "init"], catch_exceptions=False)
    assert_bad_input(result, str(bad), '[jobs."system.nosuch"]: unknown job type')
    assert not (tmp_path / "data").exists()


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.toml"), "types"])
    assert_bad_input(result, str(tmp_path / "nope.toml"), "config file not found")


def test_config_from_environment(tmp_path: Path, conf: Path) -> None:
    result = CliRunner().invoke(main, ["init"], env={"ISPQUEUE_CONFIG": str(conf)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "data" / "ispqueue.db").exists()


def test_run_with_unknown_queue(conf: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ispqueue", "--config", str(conf), "run",
                           "--queues", "default,nosuch"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert_bad_input(done, "unknown queue(s): nosuch")
    assert not (tmp_path / "data").exists()
    assert not (tmp_path / "logs").exists()


# -- init and types -----------------------------------------------------------------------------


def test_init_is_safe_to_repeat(cli: Callable[..., Result], tmp_path: Path) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.stderr
    every = [version for version, _ in migrations.available()]
    assert f"applied migrations {every}" in first.stdout
    assert f"data dir {tmp_path / 'data'}" in first.stdout
    assert (tmp_path / "data" / "ispqueue.db").is_file()
    assert (tmp_path / "data" / "queue.db").is_file()
    assert (tmp_path / "logs").is_dir()

    second = cli("init")
    assert second.exit_code == 0, second.stderr
    assert "schema already current" in second.stdout
    assert "applied migrations" not in second.stdout
    summary = json_out(cli("--json", "init"))
    assert summary["migrations_applied"] == []
    assert summary["schema_version"] == migrations.latest_version()


def test_types(cli: Callable[..., Result]) -> None:
    result = cli("types")
    assert result.exit_code == 0 and result.stderr == ""
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TYPE", "GROUP", "QUEUE", "TIMEOUT", "TRIES", "BACKOFF", "LEGACY"]
    canary = next(row for row in rows if row.startswith("system.canary "))
    assert "(arg queue, default default)" in canary
    assert canary.split()[-4:] == ["60", "1", "-", "-"]


def test_types_json(cli: Callable[..., Result]) -> None:
    rows = {row["name"]: row for row in json_out(cli("types", "--json"))}
    canary = rows["system.canary"]
    assert canary["group"] == "system"
    assert canary["queue"] == "(arg queue, default default)"
    assert (canary["timeout"], canary["tries"], canary["backoff"]) == (60.0, 1, [])
    assert canary["unique"] is False and canary["legacy"] == []
    assert canary["description"].startswith("Dead-man's switch")
    assert json_out(cli("--json", "types")) == list(rows.values())


def test_types_show_config_overrides(tmp_path: Path) -> None:
    path = tmp_path / "over.toml"
    path.write_text(config_text(tmp_path, '[jobs."system.canary"]\ntimeout = 15\ntries = 3\n'
                                          "backoff = [5, 10]\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "types", "--json"],
                                catch_exceptions=False)
    canary = next(r for r in json_out(result) if r["name"] == "system.canary")
    assert (canary["timeout"], canary["tries"], canary["backoff"]) == (15.0, 3, [5.0, 10.0])


# -- enqueue ------------------------------------------------------------------------------------


def test_enqueue_prints_the_id(installed: Callable[..., Result], tmp_path: Path) -> None:
    result = installed("enqueue", "system.canary", "--arg", "queue=payments",
                       "--arg", "hold_seconds=2.5")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "2\n", "")
    with sqlite3.connect(tmp_path / "data" / "ispqueue.db") as db:
        row = db.execute("SELECT type, queue, status, args, source FROM job WHERE id = 2")
        assert row.fetchone() == ("system.canary", "payments", "queued",
                                  '{"hold_seconds": 2.5, "queue": "payments"}', "cli")


def test_enqueue_json_prints_the_job(installed: Callable[..., Result]) -> None:
    job = json_out(installed("enqueue", "system.canary", "--json", "--priority", "5",
                             "--args-json", '{"hold_seconds": 1, "queue": "imports"}',
                             "--arg", "hold_seconds=3"))
    assert job["id"] == 2
    assert (job["type"], job["status"], job["queue"], job["priority"]) == (
        "system.canary", "queued", "imports", 5)
    assert job["args"] == {"hold_seconds": 3.0, "queue": "imports"}  # --arg wins
    assert (job["source"], job["attempt"], job["tries"], job["timeout"]) == ("cli", 0, 1, 60.0)
    assert job["unique_key"] is None


def test_enqueue_later(installed: Callable[..., Result]) -> None:
    with freeze_time(T0):
        delayed = json_out(installed("enqueue", "system.canary", "--json", "--delay", "90"))
        at = json_out(installed("enqueue", "system.canary", "--json",
                                "--at", "2026-12-05T08:00:00+06:00"))
        past = json_out(installed("enqueue", "system.canary", "--json",
                                  "--at", "2026-12-01T00:00:00+00:00"))
    assert (delayed["status"], delayed["scheduled_for"]) == ("scheduled",
                                                             "2026-12-04T10:01:30+00:00")
    assert at["status"] == "scheduled"
    assert dt.datetime.fromisoformat(at["scheduled_for"]) == dt.datetime(2026, 12, 5, 2, 0,
                                                                         tzinfo=dt.UTC)
    assert past["status"] == "queued"


def test_unique_enqueue_returns_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "unique.toml"
    path.write_text(config_text(tmp_path, '[jobs."system.canary"]\nunique = true\n'),
                    encoding="utf-8")

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(path), *args], catch_exceptions=False)

    run("init")
    first = run("enqueue", "system.canary", "--arg", "queue=payments")
    again = run("enqueue", "system.canary", "--args-json", '{"queue": "payments"}')
    other = run("enqueue", "system.canary", "--arg", "queue=imports")
    assert (first.stdout, first.stderr) == ("1\n", "")
    assert again.exit_code == 0
    assert again.stdout == "1\n"
    assert again.stderr == "note: job 1 does the same work and is queued\n"
    assert other.stdout == "2\n"
    assert count(tmp_path) == 2


# -- jobs list / show / cancel / retry / prune --------------------------------------------------


@pytest.fixture
def shared(runtime: Runtime, conf: Path) -> Runtime:
    """The `runtime` fixture's installation, which the `cli` fixture's config file names."""
    assert runtime.config.data_dir == conf.parent / "data"
    return runtime


def ids(result: Result) -> list[int]:
    return [job["id"] for job in json_out(result)]


def test_jobs_list_filters(shared: Runtime, cli: Callable[..., Result]) -> None:
    with freeze_time(T0 - dt.timedelta(hours=3)):
        old_ok = drive(shared, "succeeded")
        old_failed = drive(shared, "failed")
    with freeze_time(T0 - dt.timedelta(minutes=10)):
        new_ok = drive(shared, "succeeded")
        queued = drive(shared, "queued", queue="payments")
        cancelled = drive(shared, "cancelled")
    with freeze_time(T0):
        assert ids(cli("jobs", "list", "--json")) == [cancelled, queued, new_ok, old_failed,
                                                      old_ok]
        assert ids(cli("jobs", "list", "--json", "--status", "succeeded")) == [new_ok, old_ok]
        assert ids(cli("jobs", "list", "--json", "--status", "failed")) == [old_failed]
        assert ids(cli("jobs", "list", "--json", "--since", "1h")) == [cancelled, queued, new_ok]
        assert ids(cli("jobs", "list", "--json", "--since", "2026-12-04T06:00:00+00:00",
                       "--status", "succeeded")) == [new_ok, old_ok]
        assert ids(cli("jobs", "list", "--json", "--limit", "2")) == [cancelled, queued]
        assert ids(cli("jobs", "list", "--json", "--type", "system.canary", "--limit", "1")) == [
            cancelled]
        assert ids(cli("--json", "jobs", "list", "--type", "system.canary", "--status",
                       "queued")) == [queued]
        assert ids(cli("jobs", "list", "--json", "--router", "core-1")) == []
        text = cli("jobs", "list", "--status", "failed")
    assert text.exit_code == 0 and text.stderr == ""
    header, row = text.stdout.splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "ROUTER", "TRY", "ENQUEUED", "DURATION",
                              "ERROR"]
    assert row.split()[:5] == [str(old_failed), "system.canary", "failed", "-", "1/1"]
    assert "RuntimeError: probe broke" in row


def test_jobs_list_empty(installed: Callable[..., Result]) -> None:
    result = installed("jobs", "list", "--status", "failed")
    assert (result.exit_code, result.stdout) == (0, "no jobs\n")
    assert json_out(installed("jobs", "list", "--status", "failed", "--json")) == []


def test_jobs_show_with_events(shared: Runtime, cli: Callable[..., Result]) -> None:
    with freeze_time(T0):
        job_id = drive(shared, "succeeded", seconds=2.5)
    shown = json_out(cli("jobs", "show", str(job_id), "--json"))
    assert (shown["id"], shown["status"], shown["attempt"], shown["duration"]) == (
        job_id, "succeeded", 1, 2.5)
    assert shown["result"] == {"ok": True}
    assert [(e["status"], e["attempt"]) for e in shown["events"]] == [
        ("queued", 0), ("running", 1), ("succeeded", 1)]
    assert shown["events"][0]["message"] == "enqueued by api"

    text = cli("jobs", "show", str(job_id))
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0] == f"job {job_id}  system.canary  succeeded"
    events = lines[lines.index("  events:") + 1:]
    assert [line.split()[1] for line in events] == ["queued", "running", "succeeded"]
    assert "enqueued by api" in events[0]


def test_jobs_show_failed_has_error_and_traceback(shared: Runtime,
                                                  cli: Callable[..., Result]) -> None:
    job_id = drive(shared, "failed")
    shown = json_out(cli("jobs", "show", str(job_id), "--json"))
    assert shown["error"] == "RuntimeError: probe broke"
    assert "RuntimeError: probe broke" in shown["traceback"]


def test_jobs_cancel(shared: Runtime, cli: Callable[..., Result], tmp_path: Path) -> None:
    job_id = drive(shared, "queued")
    first = cli("jobs", "cancel", str(job_id))
    assert (first.exit_code, first.stdout, first.stderr) == (0, f"job {job_id}: cancelled\n", "")
    assert shared.ledger.get(job_id).status == "cancelled"
    events = count(tmp_path, "job_event")
    assert_bad_input(cli("jobs", "cancel", str(job_id)), f"job {job_id} is already cancelled")
    assert count(tmp_path, "job_event") == events


def test_jobs_cancel_running_asks_the_runner(shared: Runtime, cli: Callable[..., Result]) -> None:
    job_id = drive(shared, "queued")
    shared.ledger.claim(job_id)
    result = json_out(cli("--json", "jobs", "cancel", str(job_id)))
    assert result == {"id": job_id, "outcome": "cancel requested"}
    job = shared.ledger.get(job_id)
    assert (job.status, job.cancel_requested) == ("running", True)


def test_jobs_retry_makes_a_new_attempt_on_the_same_row(shared: Runtime,
                                                        cli: Callable[..., Result],
                                                        tmp_path: Path) -> None:
    job_id = drive(shared, "failed")
    assert shared.ledger.get(job_id).attempt == 1
    result = cli("jobs", "retry", str(job_id))
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, f"job {job_id} queued again\n", "")
    assert count(tmp_path) == 1
    job = shared.ledger.get(job_id)
    assert (job.status, job.attempt, job.tries, job.finished_at) == ("queued", 1, 2, None)
    assert job.id in shared.queues.pending_ids("default")  # a new queue message
    again = shared.ledger.claim(job_id)
    assert again.attempt == 2
    shown = json_out(cli("jobs", "show", str(job_id), "--json"))
    assert [e["status"] for e in shown["events"]] == ["queued", "running", "failed", "queued",
                                                      "running"]
    assert shown["events"][3]["message"] == "retry by hand"
    assert_bad_input(cli("jobs", "retry", str(job_id)),
                     f"job {job_id} is running; only failed or cancelled jobs retry")


def test_jobs_prune(shared: Runtime, cli: Callable[..., Result], tmp_path: Path) -> None:
    with freeze_time(T0 - dt.timedelta(days=40)):
        old = [drive(shared, "succeeded"), drive(shared, "failed"), drive(shared, "cancelled")]
        old_waiting = drive(shared, "queued")
    with freeze_time(T0 - dt.timedelta(days=29)):
        recent = drive(shared, "succeeded")
    kept_events = count(tmp_path, "job_event") - 3 - 3 - 2
    with freeze_time(T0):
        result = cli("jobs", "prune", "--older-than", "30d")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "deleted 3 finished job(s) older than 30d\n"
    with sqlite3.connect(tmp_path / "data" / "ispqueue.db") as db:
        assert [r[0] for r in db.execute("SELECT id FROM job ORDER BY id")] == [old_waiting,
                                                                                recent]
        left = {r[0] for r in db.execute("SELECT DISTINCT job_id FROM job_event")}
    assert left == {old_waiting, recent}
    assert count(tmp_path, "job_event") == kept_events
    assert not set(old) & left
    with freeze_time(T0):
        assert json_out(cli("--json", "jobs", "prune", "--older-than", "30d")) == {"deleted": 0}


# -- stats --------------------------------------------------------------------------------------


def test_stats(shared: Runtime, cli: Callable[..., Result]) -> None:
    with freeze_time(T0 - dt.timedelta(hours=2)) as clock:
        for seconds in range(1, 10):
            drive(shared, "succeeded", seconds=seconds)
        flaky = drive(shared, "retrying", tries=2)  # one retry, then 10 s to succeed
        clock.tick(5)
        assert [job.id for job in shared.ledger.promote_due()] == [flaky]
        job = shared.ledger.claim(flaky)
        clock.tick(10)
        shared.ledger.succeed(job, None)
    with freeze_time(T0 - dt.timedelta(hours=1)):
        drive(shared, "failed", seconds=30)
        drive(shared, "failed", seconds=40)
        drive(shared, "cancelled")
    with freeze_time(T0 - dt.timedelta(days=3)):
        drive(shared, "failed")  # outside the default 24h window
    with freeze_time(T0 - dt.timedelta(minutes=5)):
        shared.enqueue("system.canary", {"queue": "payments"})
        shared.enqueue("system.canary", {"queue": "payments"}, delay=600)
    with freeze_time(T0):
        data = json_out(cli("stats", "--json"))
        text = cli("stats")
        narrow = json_out(cli("--json", "stats", "--since", "90m"))

    canary = data["types"]["system.canary"]
    assert canary == {"succeeded": 10, "failed": 2, "cancelled": 1, "retries": 1,
                      "p50": 5.0, "p95": 10.0, "failure_rate": pytest.approx(2 / 12)}
    assert data["since"] == "2026-12-03T10:00:00+00:00"
    payments = data["queues"]["payments"]
    assert payments == {"queued": 1, "scheduled": 1, "running": 0, "messages": 1,
                        "oldest_queued_seconds": 300.0, "last_canary_seconds": None}
    assert data["queues"]["imports"]["queued"] == 0
    # The last canary to succeed on `default` finished 2 h - 15 s before T0 (the flaky one).
    assert data["queues"]["default"]["last_canary_seconds"] == 2 * 3600 - 15
    assert narrow["types"]["system.canary"]["succeeded"] == 0
    assert narrow["types"]["system.canary"]["failed"] == 2

    assert text.exit_code == 0 and text.stderr == ""
    row = next(line for line in text.stdout.splitlines() if line.startswith("system.canary"))
    assert row.split() == ["system.canary", "10", "2", "1", "1", "5.00s", "10.00s", "16.7%"]
    queue_row = next(line for line in text.stdout.splitlines() if line.startswith("payments"))
    assert queue_row.split() == ["payments", "1", "1", "0", "1", "300s", "-"]


def test_stats_without_jobs(installed: Callable[..., Result]) -> None:
    result = installed("stats", "--since", "1s")
    assert result.exit_code == 0
    assert "no finished jobs" in result.stdout


# -- logs ---------------------------------------------------------------------------------------


def test_logs_filters(shared: Runtime, cli: Callable[..., Result]) -> None:
    setup_logging(shared.config.logging, shared.config.secrets(), stderr=False)
    with freeze_time(T0 - dt.timedelta(hours=3)):
        old = drive(shared, "succeeded")
    with freeze_time(T0 - dt.timedelta(minutes=5)):
        broken = drive(shared, "failed")
        fine = drive(shared, "succeeded")
    stop_logging()
    with freeze_time(T0):
        by_job = cli("logs", "--job", str(broken), "--json")
        errors = cli("logs", "--level", "error", "--json")
        recent = cli("logs", "--since", "1h", "--json")
        text = cli("logs", "--job", str(fine))
    records = [json.loads(line) for line in by_job.stdout.splitlines()]
    assert by_job.exit_code == 0
    assert [(r["job"], r["message"].split(":")[0]) for r in records] == [
        (broken, "queued"), (broken, "running"), (broken, "failed")]
    assert {r["type"] for r in records} == {"system.canary"}

    error_records = [json.loads(line) for line in errors.stdout.splitlines()]
    assert [(r["job"], r["level"]) for r in error_records] == [(broken, "ERROR")]
    assert "RuntimeError: probe broke" in error_records[0]["message"]

    recent_jobs = {json.loads(line).get("job") for line in recent.stdout.splitlines()}
    assert recent_jobs == {broken, fine}
    assert old not in recent_jobs

    lines = text.stdout.splitlines()
    assert len(lines) == 3
    assert all(f"job={fine} system.canary" in line for line in lines)
    assert lines[-1].endswith("succeeded")


def test_logs_without_a_log_file(tmp_path: Path) -> None:
    path = tmp_path / "nolog.toml"
    path.write_text(config_text(tmp_path).replace(
        f'file = "{tmp_path / "logs" / "ispqueue.jsonl"}"', 'file = ""'), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "logs"], catch_exceptions=False)
    assert_bad_input(result, "[logging] file is not set")


# -- help ---------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "ispqueue", "--help"], capture_output=True,
                          text=True, timeout=60, check=True)
    listed = done.stdout.split("Commands:", 1)[1].split()
    for command in ("init", "run", "enqueue", "types", "jobs", "stats", "logs", *main.commands):
        assert command in listed, command
    jobs_help = subprocess.run([sys.executable, "-m", "ispqueue", "jobs", "--help"],
                               capture_output=True, text=True, timeout=60, check=True)
    listed = jobs_help.stdout.split("Commands:", 1)[1].split()
    for command in ("list", "show", "retry", "cancel", "prune"):
        assert command in listed, command
