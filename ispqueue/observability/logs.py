"""Logging: loguru sinks, secret redaction, the stdlib bridge, and reading the log back.

Two sinks: human lines on stderr (journald-friendly under systemd) and a rotated JSON-lines
file that `ispqueue logs` reads. Every record passes the redaction filter before either sink
formats it, so a configured secret never reaches a log, at any level. A sink added elsewhere
must use `redact_record` as its filter too, and never render loguru's own `{exception}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from loguru import logger

from ispqueue.config import LoggingConfig
from ispqueue.errors import BadInput, ConfigError

MASK = "***"
CONTEXT_FIELDS = ("job", "type", "router", "queue", "event")
LEVEL_NUMBERS = {
    "TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50,
}
# librouteros logs every API word at DEBUG, the login password included; huey logs every task
# at INFO, and the ledger already logs each transition.
LIBRARY_FLOORS = {"librouteros": logging.INFO, "peewee": logging.INFO, "huey": logging.WARNING}

_KEYS = (r"(?:password|passwd|passphrase|pwd|token|secret|api[_-]?key|private[_-]?key|"
         r"access[_-]?token|auth[_-]?token|client[_-]?secret)")
_VALUE = r"""(?:'[^']*'|"[^"]*"|[^\s'",;&)\]}]+)"""
_SECRET_PARTS = re.compile(
    # a quoted RouterOS API word, as librouteros logs it: '=password=a b' up to its quote
    rf"""(?P<word>(?P<wq>['"])={_KEYS}=)(?:\\.|(?!(?P=wq)).)*"""
    rf"|(?P<pair>\b{_KEYS}=){_VALUE}"  # password=x, and an unquoted API word =password=x
    rf"""|(?P<quoted>(?P<q>['"]){_KEYS}(?P=q)\s*:\s*){_VALUE}"""  # 'password': 'x' (repr, JSON)
    r"|(?P<url>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?=@)",  # scheme://user:pw@host
    re.IGNORECASE,
)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


class Redactor:
    """Masks configured secrets (every spelling a log could show) and secret-looking parts."""

    def __init__(self, secrets: Iterable[str] = ()):
        spellings = {v for s in secrets if s for v in _spellings(s) if v}
        self._exact = sorted(spellings, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._exact:
            if secret in text:
                text = text.replace(secret, MASK)
        if _may_hold_secret(text):
            text = _SECRET_PARTS.sub(_keep_name, text)
        return text


def _may_hold_secret(text: str) -> bool:
    # Spelled out: several times faster than any() over a tuple or one regex search.
    lowered = text.lower()
    return ("pass" in lowered or "pwd" in lowered or "token" in lowered or "secret" in lowered
            or "key" in lowered or "://" in lowered)


def _spellings(secret: str) -> set[str]:
    # A secret reaches a log as itself, inside a repr() or JSON string, or percent-encoded in a URL.
    return {
        secret, repr(secret)[1:-1], json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe=""), unquote(secret),
    }


def _keep_name(match: re.Match[str]) -> str:
    name = match.group("word") or match.group("pair") or match.group("quoted") or match.group("url")
    return name + MASK


_redactor = Redactor()
_handler_ids: list[int] = []


def redact(text: str) -> str:
    """Mask secrets in `text` the way the log sinks do (secrets of the last setup_logging)."""
    return _redactor(text)


# --- setup -------------------------------------------------------------------------------------


def setup_logging(config: LoggingConfig, secrets: Iterable[str] = (), *,
                  stderr: bool = True) -> None:
    """Configure the sinks and the stdlib bridge; calling again replaces the earlier setup."""
    global _redactor
    _redactor = Redactor(secrets)
    _remove_sinks()
    if stderr:
        _add_stderr_sink(config)
    if config.file is not None:
        _add_file_sink(config)
    _bridge_stdlib(config.level)


def stop_logging() -> None:
    """Remove what setup_logging added (sinks and the stdlib bridge)."""
    _remove_sinks()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, InterceptHandler)]:
        root.removeHandler(handler)


def _remove_sinks() -> None:
    for handler_id in [*_handler_ids, 0]:  # 0: loguru's default stderr sink
        with contextlib.suppress(ValueError):
            logger.remove(handler_id)
    _handler_ids.clear()


_SINK_OPTIONS = {"enqueue": False, "backtrace": False, "diagnose": False, "colorize": False}


def _add_stderr_sink(config: LoggingConfig) -> None:
    line = _json_line if config.json_stderr else _human_line
    if os.environ.get("JOURNAL_STREAM"):  # journald stamps the time itself
        def render(record: dict[str, Any]) -> str:
            return _prefix_each_line(_journal_prefix(record), line(record))
    else:
        def render(record: dict[str, Any]) -> str:
            return record["time"].strftime("%Y-%m-%d %H:%M:%S ") + line(record)
    _handler_ids.append(logger.add(
        _write_stderr, level=config.level, filter=redact_record, format=_formatter(render),
        **_SINK_OPTIONS,
    ))


def _add_file_sink(config: LoggingConfig) -> None:
    assert config.file is not None
    try:
        config.file.parent.mkdir(parents=True, exist_ok=True)
        _handler_ids.append(logger.add(
            str(config.file), level=config.level, filter=redact_record,
            format=_formatter(_json_line), rotation=config.rotation,
            retention=config.retention, encoding="utf-8", **_SINK_OPTIONS,
        ))
    except OSError as exc:
        raise ConfigError(f"[logging] file: cannot write {config.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"[logging] rotation: cannot use {config.rotation!r}: {exc}") from None


def _write_stderr(message: str) -> None:
    # Looked up on every write, so a replaced sys.stderr (tests, the CLI) is honoured.
    sys.stderr.write(message)


def _formatter(render: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """A loguru format function: the line is built here; the template stays constant (cached)."""
    key = f"_line{id(render)}"

    def format_record_for_sink(record: dict[str, Any]) -> str:
        record["extra"][key] = render(record)
        return "{extra[" + key + "]}\n"

    return format_record_for_sink


# --- per-record work ---------------------------------------------------------------------------


def redact_record(record: dict[str, Any]) -> bool:
    """Loguru filter on every sink: masks message, bound values and traceback, once a record."""
    extra = record["extra"]
    if "_redacted" in extra:
        return True
    record["message"] = _redactor(record["message"])
    for key, value in extra.items():
        if value is not None and not isinstance(value, int | float):  # bool is an int
            extra[key] = _redactor(value if isinstance(value, str) else str(value))
    exception = record["exception"]
    if exception and exception.value is not None:
        text = "".join(traceback.format_exception(exception.type, exception.value,
                                                  exception.traceback))
        extra["_exception"] = _redactor(text).rstrip("\n")
    extra["_redacted"] = True
    return True


def _json_line(record: dict[str, Any]) -> str:
    extra = record["extra"]
    if "_json" not in extra:  # the stderr sink may have built it already
        document = {
            "ts": _utc_iso(record["time"]),
            "level": record["level"].name,
            "message": record["message"],
        }
        document.update((k, extra[k]) for k in CONTEXT_FIELDS if k in extra)
        document.update((k, v) for k, v in extra.items() if k[0] != "_" and k not in document)
        if "_exception" in extra:
            document["exception"] = extra["_exception"]
        extra["_json"] = _JSON.encode(document)
    return extra["_json"]


def _human_line(record: dict[str, Any]) -> str:
    extra = record["extra"]
    line = f"{record['level'].name:<5} {_context(extra)}{record['message']}"
    if "_exception" in extra:
        line += "\n" + extra["_exception"]
    return line


def _context(fields: Mapping[str, Any]) -> str:
    """`job=12 router.health[core-1] ` from whichever of job, type, router are present."""
    parts = []
    if fields.get("job") is not None:
        parts.append(f"job={fields['job']}")
    kind, router = fields.get("type"), fields.get("router")
    if kind and router:
        parts.append(f"{kind}[{router}]")
    elif kind or router:
        parts.append(kind or f"router={router}")
    if fields.get("logger"):
        parts.append(f"{fields['logger']}:")
    return " ".join(parts) + " " if parts else ""


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _journal_prefix(record: dict[str, Any]) -> str:
    """sd-daemon(3) priority; journald reads it off each stderr line as that line's level."""
    number = record["level"].no
    for floor, prefix in ((50, "<2>"), (40, "<3>"), (30, "<4>"), (25, "<5>"), (20, "<6>")):
        if number >= floor:
            return prefix
    return "<7>"


def _prefix_each_line(prefix: str, text: str) -> str:
    return prefix + text.replace("\n", "\n" + prefix)


# --- stdlib logging ----------------------------------------------------------------------------


class InterceptHandler(logging.Handler):
    """Hands stdlib records (huey, peewee, librouteros) to loguru, above each library's floor."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < LIBRARY_FLOORS.get(record.name.partition(".")[0], 0):
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format arguments must not lose the line
            message = f"{record.msg!r} (unformattable arguments)"
        logger.opt(exception=record.exc_info or None).bind(logger=record.name).log(level, message)


def _bridge_stdlib(level: str) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, InterceptHandler)]:
        root.removeHandler(handler)
    root.addHandler(InterceptHandler())
    root.setLevel(LEVEL_NUMBERS[level])
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, LEVEL_NUMBERS[level]))


# --- reading the JSON-lines file back ----------------------------------------------------------


@dataclass(frozen=True)
class _Filter:
    job: int | None
    router: str | None
    type: str | None
    minimum: int
    since: datetime | None

    def __call__(self, record: dict[str, Any]) -> bool:
        if self.job is not None and str(record.get("job")) != str(self.job):
            return False
        if self.router is not None and record.get("router") != self.router:
            return False
        if self.type is not None and record.get("type") != self.type:
            return False
        if LEVEL_NUMBERS.get(record.get("level"), 0) < self.minimum:
            return False
        return self.since is None or record_time(record) >= self.since


def _make_filter(job: int | None, router: str | None, type: str | None, level: str | None,
                 since: datetime | None) -> _Filter:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return _Filter(job, router, type, _level_number(level), since)


def _level_number(level: str | None) -> int:
    if level is None:
        return 0
    name = {"WARN": "WARNING"}.get(level.upper(), level.upper())
    if name not in LEVEL_NUMBERS:
        raise BadInput(f"unknown log level {level!r}; use one of {', '.join(LEVEL_NUMBERS)}")
    return LEVEL_NUMBERS[name]


def record_time(record: Mapping[str, Any]) -> datetime:
    """The record's `ts` as an aware datetime (UTC when the text names no offset)."""
    moment = datetime.fromisoformat(record["ts"])
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse(line: bytes) -> dict[str, Any] | None:
    """One JSON-lines record, or None for a line that is not one of ours."""
    try:
        record = json.loads(line)
        if isinstance(record, dict) and isinstance(record.get("level"), str):
            record_time(record)
            return record
    except (ValueError, TypeError, KeyError):
        pass
    return None


def log_files(path: Path) -> list[Path]:
    """The rotated siblings of `path`, oldest first, then `path` itself when it exists."""
    pattern = re.compile(
        re.escape(path.stem) + r"\.(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6})(?:\.(\d+))?"
        + re.escape(path.suffix)
    )
    rotated = []
    for sibling in path.parent.glob(f"{path.stem}.*{path.suffix}"):
        found = pattern.fullmatch(sibling.name)
        if found:
            # Rotation renames a file after its last write, so mtime orders them; the name
            # (creation time, then loguru's collision counter) breaks ties.
            key = (_mtime_ns(sibling), found.group(1), int(found.group(2) or 1))
            rotated.append((key, sibling))
    files = [sibling for _, sibling in sorted(rotated)]
    return [*files, path] if path.exists() else files


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def read_records(path: Path, *, job: int | None = None, router: str | None = None,
                 type: str | None = None, level: str | None = None,
                 since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Matching records of the log file and its rotated siblings, oldest first."""
    return _read_files(log_files(path), path, _make_filter(job, router, type, level, since))


def _read_files(files: list[Path], current: Path, matches: _Filter,
                skip_inode: int | None = None) -> Iterator[dict]:
    for file in files:
        if file != current and matches.since and _ends_before(file, matches.since):
            continue
        yield from _read_file(file, matches, skip_inode)


def _read_file(file: Path, matches: _Filter, skip_inode: int | None = None) -> Iterator[dict]:
    try:
        with file.open("rb") as handle:
            if skip_inode is not None and os.fstat(handle.fileno()).st_ino == skip_inode:
                return
            for line in handle:
                record = _parse(line)
                if record is not None and matches(record):
                    yield record
    except FileNotFoundError:
        pass  # removed by retention between listing and reading


def _ends_before(file: Path, since: datetime) -> bool:
    """Whether the last record of a rotated file is older than `since` (so skip the file)."""
    try:
        with file.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return True
    for line in reversed(lines):
        record = _parse(line)
        if record is not None:
            return record_time(record) < since
    return False


def follow(path: Path, *, job: int | None = None, router: str | None = None,
           type: str | None = None, level: str | None = None, since: datetime | None = None,
           poll: float = 0.25, stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Matching records as they are written, across rotations, until `stop` is set.

    Without `since` only records written from now on; with it, the older matching records
    (rotated files too) come first, with no gap or repeat before the new ones.
    """
    matches = _make_filter(job, router, type, level, since)
    # Opened now, not at the first next(), so "from now on" means from this call.
    tail = _Tail(path, from_start=since is not None)
    return _follow(path, tail, matches, poll, stop or threading.Event())


def _follow(path: Path, tail: _Tail, matches: _Filter, poll: float,
            stop: threading.Event) -> Iterator[dict]:
    try:
        if matches.since is not None:
            # `tail` reads the current file; skip it among the rotated ones too, in case it
            # was renamed after `tail` opened it.
            rotated = [f for f in log_files(path) if f != path]
            yield from _read_files(rotated, path, matches, skip_inode=tail.inode)
        while not stop.is_set():
            for line in tail.lines():
                record = _parse(line)
                if record is not None and matches(record):
                    yield record
            stop.wait(poll)
    finally:
        tail.close()


class _Tail:
    """Complete lines appended to a log file, followed across rotations."""

    def __init__(self, path: Path, *, from_start: bool):
        self.path = path
        self.handle: BinaryIO | None = None
        self.partial = b""
        self._open(from_start)

    @property
    def inode(self) -> int | None:
        return os.fstat(self.handle.fileno()).st_ino if self.handle else None

    def lines(self) -> list[bytes]:
        if self.handle is None and not self._open(from_start=True):
            return []
        lines = self._read()
        if self._replaced():
            lines += self._read()  # written just before the rename
            lines += self._switch()
        return lines

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle, self.partial = None, b""

    def _switch(self) -> list[bytes]:
        """Open the new file; files rotated in between (a burst) are read whole first."""
        old = self.inode
        self.close()
        self._open(from_start=True)
        lines = []
        for file in _rotated_between(self.path, old, self.inode):
            with contextlib.suppress(FileNotFoundError):
                lines += file.read_bytes().split(b"\n")[:-1]
        return lines + (self._read() if self.handle else [])

    def _open(self, from_start: bool) -> bool:
        try:
            self.handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        if not from_start:
            self.handle.seek(0, os.SEEK_END)
        return True

    def _read(self) -> list[bytes]:
        assert self.handle is not None
        *complete, self.partial = (self.partial + self.handle.read()).split(b"\n")
        return complete

    def _replaced(self) -> bool:
        assert self.handle is not None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return True
        opened = os.fstat(self.handle.fileno())
        if current.st_ino != opened.st_ino or current.st_dev != opened.st_dev:
            return True
        if current.st_size < self.handle.tell():  # truncated in place (copytruncate)
            self.handle.seek(0)
            self.partial = b""
        return False


def _rotated_between(path: Path, old: int | None, new: int | None) -> list[Path]:
    """Rotated files newer than the one with inode `old`, except the one now open (`new`)."""
    rotated = [(f, _inode(f)) for f in log_files(path) if f != path]
    inodes = [inode for _, inode in rotated]
    if old not in inodes:
        return []
    return [f for f, inode in rotated[inodes.index(old) + 1:] if inode != new]


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


# --- display and time input --------------------------------------------------------------------


def format_record(record: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """One human line (`2026-12-04 10:00:01 INFO  job=12 router.health[core-1] message`).

    Times show in `tz` (default: this machine's local time); a traceback follows on its own
    lines when the record has one.
    """
    shown = record_time(record).astimezone(tz)
    line = f"{shown:%Y-%m-%d %H:%M:%S} {record.get('level', '?'):<5} "
    line += f"{_context(record)}{record.get('message', '')}"
    if record.get("exception"):
        line += "\n" + str(record["exception"]).rstrip("\n")
    return line


_DURATION = re.compile(r"(?:\d+[smhdw])+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, tz: tzinfo | None = None) -> datetime:
    """`45s`, `30m`, `1h`, `2d`, `1w`, `1h30m` ago, or an ISO-8601 time, as aware UTC.

    An ISO time without an offset is read in `tz` (default UTC).
    """
    cleaned = text.strip().lower()
    if _DURATION.fullmatch(cleaned):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)(\w)", cleaned))
        try:
            return datetime.now(UTC) - timedelta(seconds=seconds)
        except OverflowError:
            raise BadInput(f"time span {text!r} reaches too far back") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(
            f"expected a time span such as 45s, 30m, 1h, 2d or an ISO-8601 time, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz or UTC)
    return moment.astimezone(UTC)
