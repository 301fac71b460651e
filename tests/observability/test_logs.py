"""Log sinks, redaction, the stdlib bridge, and reading the JSON-lines file back."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time
from loguru import logger

from ispqueue.config import LoggingConfig
from ispqueue.errors import BadInput
from ispqueue.observability.logs import (
    follow,
    format_record,
    log_files,
    parse_since,
    read_records,
    redact,
    setup_logging,
    stop_logging,
)

SECRET = "hunter2"
DB_SECRET = "p@ss/w rd"  # as it sits, percent-encoded, in a database URL
LIBRARIES = ("", "huey", "peewee", "librouteros")


@pytest.fixture(autouse=True)
def clean_logging(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    levels = {name: logging.getLogger(name).level for name in LIBRARIES}
    yield
    stop_logging()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def logging_config(tmp_path: Path, level: str = "TRACE", rotation: str = "10 MB",
                json_stderr: bool = False) -> LoggingConfig:
    return LoggingConfig(level=level, file=tmp_path / "logs" / "ispqueue.jsonl",
                         rotation=rotation, retention=10, json_stderr=json_stderr)


def start(tmp_path: Path, **options) -> Path:
    config = logging_config(tmp_path, **options)
    setup_logging(config, [SECRET, "p%40ss%2Fw%20rd"])
    assert config.file is not None
    return config.file


def file_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the JSON-lines file ------------------------------------------------------------------------


@freeze_time("2026-12-04 10:00:01.123456")
def test_file_gets_one_compact_json_object_per_line(tmp_path):
    path = start(tmp_path)
    logger.info("first")
    logger.warning("second")
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        '{"ts":"2026-12-04T10:00:01.123Z","level":"INFO","message":"first"}'
    )
    assert [r["level"] for r in file_lines(path)] == ["INFO", "WARNING"]


def test_bound_context_comes_first_then_other_extras(tmp_path):
    path = start(tmp_path)
    logger.bind(job=12, type="router.health", router="core-1", queue="default",
                event="succeeded", attempt=2, duration=0.25).info("done")
    record = file_lines(path)[0]
    assert list(record) == ["ts", "level", "message", "job", "type", "router", "queue", "event",
                            "attempt", "duration"]
    assert record["job"] == 12
    assert record["attempt"] == 2
    assert record["duration"] == 0.25


def test_exception_text_is_a_field(tmp_path):
    path = start(tmp_path)
    try:
        raise ValueError("bad reply")
    except ValueError:
        logger.bind(job=3).exception("job failed")
    record = file_lines(path)[0]
    assert record["message"] == "job failed"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("ValueError: bad reply")


def test_lines_below_the_level_are_not_written(tmp_path):
    path = start(tmp_path, level="INFO")
    logger.debug("hidden")
    logger.info("shown")
    assert [r["message"] for r in file_lines(path)] == ["shown"]


def test_setting_up_again_replaces_the_sinks(tmp_path, capfd):
    start(tmp_path)
    path = start(tmp_path)
    logger.info("once")
    assert len(file_lines(path)) == 1
    assert capfd.readouterr().err.count("once") == 1


# --- redaction ----------------------------------------------------------------------------------


def log_every_kind_of_secret() -> None:
    logger.trace("login with {} at TRACE", SECRET)
    logger.debug(f"connect postgresql://ispqueue:{DB_SECRET}@db/ispqueue")
    logger.bind(job=1, args={"password": SECRET}, note=f"pw {SECRET}").info("bound")
    logging.getLogger("librouteros").info(f"<--- '=password={SECRET}'")
    try:
        raise ConnectionError(f"login refused for password {SECRET}")
    except ConnectionError:
        logger.exception("router login failed")
    logger.debug("/ppp/secret/add =name=alice =password=customer-pw")


@pytest.mark.parametrize("level", ["TRACE", "DEBUG"])
def test_no_secret_reaches_any_sink(tmp_path, capfd, level):
    path = start(tmp_path, level=level)
    log_every_kind_of_secret()
    written = path.read_text(encoding="utf-8")
    shown = capfd.readouterr().err
    for text in (written, shown):
        assert SECRET not in text
        assert DB_SECRET not in text
        assert "customer-pw" not in text
        assert "***" in text
    assert "router login failed" in written
    assert "ConnectionError: login refused for password ***" in written


def test_json_stderr_is_redacted_too(tmp_path, capfd):
    start(tmp_path, json_stderr=True)
    logger.bind(token=SECRET).info(f"pw={SECRET}")
    err = capfd.readouterr().err
    assert SECRET not in err
    assert json.loads(err.split("\n", 1)[0].split(" ", 2)[2])["message"] == "pw=***"


def test_librouteros_debug_never_reaches_a_sink(tmp_path, capfd):
    path = start(tmp_path, level="TRACE")
    logging.getLogger("librouteros").debug("<--- '=password=x'")
    logging.getLogger("librouteros").setLevel(logging.DEBUG)  # even when someone lowers it
    logging.getLogger("librouteros").debug("<--- '=password=y'")
    assert path.read_text(encoding="utf-8") == ""
    assert capfd.readouterr().err == ""


def test_library_lines_keep_their_floors(tmp_path):
    path = start(tmp_path, level="TRACE")
    logging.getLogger("huey.consumer").info("Executing task 1")
    logging.getLogger("huey.consumer").warning("worker stuck")
    logging.getLogger("peewee").debug("('SELECT 1', [])")
    logging.getLogger("peewee").info("connected")
    logging.getLogger("ispqueue.daemon").debug("own stdlib debug {not a format field}")
    records = file_lines(path)
    assert [(r["logger"], r["message"]) for r in records] == [
        ("huey.consumer", "worker stuck"),
        ("peewee", "connected"),
        ("ispqueue.daemon", "own stdlib debug {not a format field}"),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("<--- '=password=abc def'", "<--- '=password=***'"),
    ("""--> "=secret=it's" EOS""", """--> "=secret=***" EOS"""),
    ("--> '=private-key=a\\'b c' x", "--> '=private-key=***' x"),
    ("login user=admin password=abc", "login user=admin password=***"),
    ("passwd=abc; next", "passwd=***; next"),
    ("token=abc&x=1", "token=***&x=1"),
    ("SECRET='a b c' then", "SECRET=*** then"),
    ("{'password': 'abc', 'name': 'n'}", "{'password': ***, 'name': 'n'}"),
    ('{"api_key": "abc"}', '{"api_key": ***}'),
    ("redis://:abc@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("postgresql://u:abc@db/isp", "postgresql://u:***@db/isp"),
    ("http://10.0.0.1:8080/status@x", "http://10.0.0.1:8080/status@x"),
    ("/ppp/secret/print =.proplist=name,password", "/ppp/secret/print =.proplist=name,password"),
    ("job 12 succeeded in 0.5s", "job 12 succeeded in 0.5s"),
])
def test_redact_masks_secret_looking_parts(text, expected):
    assert redact(text) == expected


def test_redact_uses_the_secrets_of_the_last_setup(tmp_path):
    setup_logging(logging_config(tmp_path), ["s3cr3t'\\"], stderr=False)
    assert redact("x s3cr3t'\\ y") == "x *** y"
    assert redact(repr("s3cr3t'\\")) == '"***"'
    setup_logging(logging_config(tmp_path), [], stderr=False)
    assert redact("x s3cr3t'\\ y") == "x s3cr3t'\\ y"


# --- stderr -------------------------------------------------------------------------------------


def test_journal_lines_carry_the_priority_and_no_time(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    start(tmp_path)
    logger.bind(job=12, type="router.health", router="core-1").info("online")
    logger.debug("detail")
    logger.warning("slow")
    try:
        raise RuntimeError("lost")
    except RuntimeError:
        logger.exception("failed")
    lines = capfd.readouterr().err.splitlines()
    assert lines[0] == "<6>INFO  job=12 router.health[core-1] online"
    assert lines[1] == "<7>DEBUG detail"
    assert lines[2] == "<4>WARNING slow"
    assert lines[3] == "<3>ERROR failed"
    assert lines[-1] == "<3>RuntimeError: lost"
    assert all(line.startswith("<3>") for line in lines[3:])
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines)


def test_terminal_lines_start_with_a_local_time(tmp_path, capfd):
    start(tmp_path)
    logger.bind(router="core-2").info("checked")
    line = capfd.readouterr().err.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO  router=core-2 checked", line)


def test_bad_rotation_is_a_config_error(tmp_path):
    with pytest.raises(BadInput, match=r"\[logging\] rotation"):
        setup_logging(logging_config(tmp_path, rotation="every full moon"))


# --- reading back -------------------------------------------------------------------------------


def write_lines(path: Path, *records: dict | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def entry(minute: int, level: str = "INFO", **fields) -> dict:
    return {"ts": f"2026-12-04T10:{minute:02d}:00.000Z", "level": level,
            "message": f"m{minute}", **fields}


@pytest.fixture
def history(tmp_path) -> Path:
    """A rotated file and the current one, with a few malformed lines."""
    path = tmp_path / "ispqueue.jsonl"
    older = tmp_path / "ispqueue.2026-12-04_09-59-00_000001.jsonl"
    write_lines(older, entry(1, job=1, type="router.health", router="core-1"),
                "not json", entry(2, "DEBUG", job=2, type="import.ip_pools", router="core-2"))
    write_lines(path, entry(3, "WARNING", job=1, type="router.health", router="core-1"),
                '{"ts": "yesterday", "level": "INFO"}', "[1, 2]",
                entry(4, "ERROR", job=3, type="router.backup", router="core-2"),
                entry(5, "SUCCESS"))
    write_lines(tmp_path / "ispqueue-notes.jsonl", entry(9))  # not a sibling
    os.utime(older, (1, 1))
    return path


def messages(records) -> list[str]:
    return [r["message"] for r in records]


def test_read_records_reads_rotated_files_first_and_skips_junk(history):
    assert messages(read_records(history)) == ["m1", "m2", "m3", "m4", "m5"]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"job": 1}, ["m1", "m3"]),
    ({"router": "core-2"}, ["m2", "m4"]),
    ({"type": "router.health"}, ["m1", "m3"]),
    ({"level": "warning"}, ["m3", "m4"]),
    ({"level": "SUCCESS"}, ["m3", "m4", "m5"]),
    ({"since": datetime(2026, 12, 4, 10, 3, tzinfo=UTC)}, ["m3", "m4", "m5"]),
    ({"since": datetime(2026, 12, 4, 10, 2, tzinfo=UTC), "router": "core-2"}, ["m2", "m4"]),
])
def test_read_records_filters(history, filters, expected):
    assert messages(read_records(history, **filters)) == expected


def test_read_records_rejects_an_unknown_level(history):
    with pytest.raises(BadInput, match="'loud'"):
        read_records(history, level="loud")


def test_read_records_of_a_missing_file_is_empty(tmp_path):
    assert list(read_records(tmp_path / "none.jsonl")) == []


def test_read_records_follows_loguru_rotation(tmp_path):
    path = start(tmp_path, rotation="400 B")
    for number in range(30):
        logger.bind(seq=number).info("line")
    assert len(log_files(path)) > 3
    assert [r["seq"] for r in read_records(path)] == list(range(30))


class Follower:
    """Runs follow() in a thread, so the test can write while it waits."""

    def __init__(self, path: Path, **filters):
        self.stop = threading.Event()
        self.records: queue.Queue[dict] = queue.Queue()
        self.iterator = follow(path, poll=0.01, stop=self.stop, **filters)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for record in self.iterator:
            self.records.put(record)

    def take(self, count: int) -> list[dict]:
        return [self.records.get(timeout=5) for _ in range(count)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def test_follow_yields_only_new_matching_lines(tmp_path):
    path = start(tmp_path)
    logger.bind(job=7).info("before")
    follower = Follower(path, job=7)
    logger.bind(job=8).info("other job")
    logger.bind(job=7).info("after")
    assert messages(follower.take(1)) == ["after"]
    follower.close()
    assert follower.records.empty()


def test_follow_survives_rotation(tmp_path):
    path = start(tmp_path, rotation="400 B")
    follower = Follower(path)
    for number in range(30):
        logger.bind(seq=number).info("line")
    assert [r["seq"] for r in follower.take(30)] == list(range(30))
    assert len(log_files(path)) > 3
    logger.bind(seq=30).info("line")
    assert [r["seq"] for r in follower.take(1)] == [30]
    follower.close()


def test_follow_waits_for_the_file_to_appear(tmp_path):
    path = tmp_path / "logs" / "ispqueue.jsonl"
    follower = Follower(path)
    start(tmp_path)
    logger.info("first")
    assert messages(follower.take(1)) == ["first"]
    follower.close()


def test_follow_with_since_starts_with_history(history):
    follower = Follower(history, since=datetime(2026, 12, 4, 10, 2, tzinfo=UTC))
    assert messages(follower.take(4)) == ["m2", "m3", "m4", "m5"]
    write_lines(history, entry(6))
    assert messages(follower.take(1)) == ["m6"]
    follower.close()
    assert follower.records.empty()


# --- display and time input ---------------------------------------------------------------------


def test_format_record_is_one_human_line():
    record = {"ts": "2026-12-04T10:00:01.500Z", "level": "INFO", "message": "probe ok",
              "job": 12, "type": "router.health", "router": "core-1"}
    assert format_record(record, UTC) == (
        "2026-12-04 10:00:01 INFO  job=12 router.health[core-1] probe ok"
    )
    dhaka = timezone(timedelta(hours=6))
    assert format_record(record, dhaka).startswith("2026-12-04 16:00:01 ")


def test_format_record_appends_the_traceback():
    record = {"ts": "2026-12-04T10:00:01.000Z", "level": "ERROR", "message": "failed",
              "exception": "Traceback (most recent call last):\nValueError: x"}
    assert format_record(record, UTC).splitlines() == [
        "2026-12-04 10:00:01 ERROR failed", "Traceback (most recent call last):", "ValueError: x",
    ]


@freeze_time("2026-12-04 10:00:00")
@pytest.mark.parametrize(("text", "expected"), [
    ("45s", datetime(2026, 12, 4, 9, 59, 15, tzinfo=UTC)),
    ("30m", datetime(2026, 12, 4, 9, 30, tzinfo=UTC)),
    ("1h", datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
    (" 2D ", datetime(2026, 12, 2, 10, 0, tzinfo=UTC)),
    ("1h30m", datetime(2026, 12, 4, 8, 30, tzinfo=UTC)),
    ("1w", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
    ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ("2026-12-01T14:00:00+06:00", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ("2026-12-01 08:00", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
    ("2026-12-01", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
])
def test_parse_since(text, expected):
    parsed = parse_since(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_parse_since_reads_naive_times_in_the_given_zone():
    dhaka = timezone(timedelta(hours=6))
    assert parse_since("2026-12-01T14:00", dhaka) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "1y", "an hour", "-1h", "1.5h", "h", "99999999999d"])
def test_parse_since_rejects_bad_input(text):
    with pytest.raises(BadInput, match=re.escape(repr(text))):
        parse_since(text)
