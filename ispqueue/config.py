"""TOML config → frozen dataclasses.

Every error names the file and the key (`config.toml: [[routers]] #2 port: ...`), unknown keys
are errors, and secrets can come inline, from a file (`*_file`) or from the environment
(`*_env`). Relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ispqueue.cron import CronExpression
from ispqueue.errors import ConfigError

QUEUES = ("imports", "notifications", "provisioning", "payments", "default")
DEFAULT_WORKERS = {"imports": 1, "notifications": 2, "provisioning": 2, "payments": 1, "default": 2}
SEARCH_PATHS = ("/etc/ispqueue/config.toml", "config.toml")
LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
POLICY_KEYS = ("queue", "timeout", "tries", "backoff", "unique", "router_lock", "priority")
DEFAULT_SCHEDULE = {"system.canary": "* * * * *", "router.health": "*/5 * * * *"}


@dataclass(frozen=True)
class RouterConfig:
    name: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    tls: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    timeout: float = 10.0
    encoding: str = "utf-8"
    fallback_encoding: str = "latin-1"
    login_method: str = "auto"
    auth_mode: str = "router"
    identity: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class QueueConfig:
    backend: str
    path: Path
    url: str = field(repr=False)
    workers: dict[str, int]
    grace_seconds: float
    poll_seconds: float


@dataclass(frozen=True)
class LoggingConfig:
    level: str
    file: Path | None
    rotation: str
    retention: int
    json_stderr: bool


@dataclass(frozen=True)
class Config:
    path: Path | None
    data_dir: Path
    timezone: ZoneInfo
    keep_finished_days: int
    database_url: str = field(repr=False)
    queue: QueueConfig
    logging: LoggingConfig
    routers: tuple[RouterConfig, ...]
    jobs: dict[str, dict[str, Any]]
    schedule: dict[str, CronExpression]

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "built-in defaults"

    def router(self, name: str) -> RouterConfig:
        for router in self.routers:
            if router.name == name:
                return router
        raise ConfigError(f"{self.source}: no router named {name!r} in [[routers]]")

    def secrets(self) -> list[str]:
        """Every secret value the config holds, for the log redaction filter."""
        found = [r.password for r in self.routers]
        found += [_url_password(self.database_url), _url_password(self.queue.url)]
        return [s for s in found if s]


def find_config_path(explicit: str | None) -> Path | None:
    """--config, then $ISPQUEUE_CONFIG, then /etc/ispqueue/config.toml, then ./config.toml."""
    chosen = explicit or os.environ.get("ISPQUEUE_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    for candidate in SEARCH_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load_config(explicit: str | None = None) -> Config:
    """Find and load the config file; built-in defaults when there is none."""
    path = find_config_path(explicit)
    if path is None:
        return parse_config({}, None)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path | None) -> Config:
    """Validate a parsed TOML document; `path` names the file in errors."""
    reader = _Reader(path)
    top = _Table(reader, data, "")
    base = _Table(reader, top.table("ispqueue"), "[ispqueue] ")
    data_dir = base.path("data_dir", "/var/lib/ispqueue")
    timezone = base.timezone("timezone", "UTC")
    keep_finished_days = base.integer("keep_finished_days", 30, 0, 3650)
    base.done()
    database = _Table(reader, top.table("database"), "[database] ")
    database_url = database.url("url", f"sqlite:///{data_dir / 'ispqueue.db'}",
                                ("sqlite", "postgresql", "postgres"))
    database.done()
    config = Config(
        path=path,
        data_dir=data_dir,
        timezone=timezone,
        keep_finished_days=keep_finished_days,
        database_url=database_url,
        queue=_queue(_Table(reader, top.table("queue"), "[queue] "), data_dir),
        logging=_logging(_Table(reader, top.table("logging"), "[logging] "), data_dir),
        routers=_routers(reader, top.array("routers")),
        jobs=_jobs(reader, top.table("jobs")),
        schedule=_schedule(_Table(reader, top.table("schedule"), "[schedule] "), timezone),
    )
    top.done()
    return config


def _queue(table: _Table, data_dir: Path) -> QueueConfig:
    backend = table.choice("backend", "sqlite", ("sqlite", "redis"))
    workers_table = _Table(table.reader, table.table("workers"), "[queue.workers] ")
    workers = {q: workers_table.integer(q, DEFAULT_WORKERS[q], 0, 64) for q in QUEUES}
    workers_table.done()
    config = QueueConfig(
        backend=backend,
        path=table.path("path", str(data_dir / "queue.db")),
        url=table.url("url", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")),
        workers=workers,
        grace_seconds=table.number("grace_seconds", 30.0, 0, 3600),
        poll_seconds=table.number("poll_seconds", 5.0, 0.05, 60),
    )
    table.done()
    return config


def _logging(table: _Table, data_dir: Path) -> LoggingConfig:
    level = table.choice("level", "INFO", LEVELS, upper=True)
    file_text = table.string("file", str(data_dir / "logs" / "ispqueue.jsonl"))
    config = LoggingConfig(
        level=level,
        file=table.reader.resolve(file_text) if file_text else None,
        rotation=table.string("rotation", "10 MB"),
        retention=table.integer("retention", 10, 1, 1000),
        json_stderr=table.boolean("json_stderr", False),
    )
    table.done()
    return config


def _routers(reader: _Reader, items: list[Any]) -> tuple[RouterConfig, ...]:
    routers, names = [], set()
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise reader.error(f"[[routers]] #{number}: expected a table")
        table = _Table(reader, item, f"[[routers]] #{number} ")
        router = _router(table)
        if router.name in names:
            raise reader.error(f"[[routers]] #{number} name: duplicate router name {router.name!r}")
        names.add(router.name)
        routers.append(router)
    return tuple(routers)


def _router(table: _Table) -> RouterConfig:
    name = table.identifier("name")
    table.where = f"[[routers]] {name!r} "
    tls = table.boolean("tls", False)
    router = RouterConfig(
        name=name,
        host=table.string("host", required=True),
        port=table.integer("port", 8729 if tls else 8728, 1, 65535),
        username=table.string("username", required=True),
        password=table.secret("password"),
        tls=tls,
        tls_verify=table.boolean("tls_verify", True),
        ca_file=table.existing_file("ca_file"),
        timeout=table.number("timeout", 10.0, 0.1, 600),
        encoding=table.encoding("encoding", "utf-8"),
        fallback_encoding=table.encoding("fallback_encoding", "latin-1"),
        login_method=table.choice("login_method", "auto", ("auto", "plain", "token")),
        auth_mode=table.choice("auth_mode", "router", ("router", "radius")),
        identity=table.string("identity", None),
        enabled=table.boolean("enabled", True),
    )
    table.done()
    return router


def _jobs(reader: _Reader, jobs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    overrides = {}
    for type_name, raw in jobs.items():
        where = f'[jobs."{type_name}"] '
        if not isinstance(raw, dict):
            raise reader.error(f"{where.strip()}: expected a table of policy keys")
        table = _Table(reader, raw, where)
        policy: dict[str, Any] = {}
        if "queue" in raw:
            policy["queue"] = table.choice("queue", None, QUEUES)
        if "timeout" in raw:
            policy["timeout"] = table.number("timeout", None, 0.1, 86400)
        if "tries" in raw:
            policy["tries"] = table.integer("tries", None, 1, 100)
        if "backoff" in raw:
            policy["backoff"] = table.backoff("backoff")
        if "unique" in raw:
            policy["unique"] = table.unique("unique")
        if "router_lock" in raw:
            policy["router_lock"] = table.boolean("router_lock", None)
        if "priority" in raw:
            policy["priority"] = table.integer("priority", None, -100, 100)
        table.done()
        overrides[type_name] = policy
    return overrides


def _schedule(table: _Table, timezone: ZoneInfo) -> dict[str, CronExpression]:
    entries = dict(DEFAULT_SCHEDULE)
    entries.update(table.raw)
    schedule = {}
    for type_name, value in entries.items():
        if value is False or value == "":
            continue  # `"TYPE" = false` switches a default schedule off
        if not isinstance(value, str):
            raise table.error(f'"{type_name}"', f"expected a cron string or false, got {value!r}")
        try:
            schedule[type_name] = CronExpression(value, timezone)
        except ValueError as exc:
            raise table.error(f'"{type_name}"', f"bad cron expression: {exc}") from None
    return schedule


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class _Reader:
    """Knows the file, so every error can name it."""

    def __init__(self, path: Path | None):
        self.path = path
        self.base = path.resolve().parent if path else Path.cwd()

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.path or 'config'}: {message}")

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (self.base / path)


_MISSING = object()


class _Table:
    """One TOML table being read: typed getters, then `done()` rejects what is left."""

    def __init__(self, reader: _Reader, raw: dict[str, Any], where: str):
        self.reader = reader
        self.raw = raw
        self.where = where
        self.seen: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return self.reader.error(f"{self.where}{key}: {message}")

    def done(self) -> None:
        for key in self.raw:
            if key not in self.seen:
                raise self.error(key, "unknown key")

    def get(self, key: str, default: Any = _MISSING, required: bool = False) -> Any:
        self.seen.add(key)
        if key in self.raw:
            return self.raw[key]
        if required or default is _MISSING:
            raise self.error(key, "required key is missing")
        return default

    def table(self, key: str) -> dict[str, Any]:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "expected a table")
        return value

    def array(self, key: str) -> list[Any]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, "expected an array of tables ([[...]])")
        return value

    def string(self, key: str, default: Any = _MISSING, required: bool = False) -> Any:
        value = self.get(key, default, required)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if required and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def identifier(self, key: str) -> str:
        value = self.string(key, required=True)
        if not all(c.isalnum() or c in "-_." for c in value):
            raise self.error(key, f"use letters, digits, '-', '_' or '.', got {value!r}")
        return value

    def boolean(self, key: str, default: Any) -> Any:
        value = self.get(key, default)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def integer(self, key: str, default: Any, low: int, high: int) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return value

    def number(self, key: str, default: Any, low: float, high: float) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}, got {value}")
        return float(value)

    def choice(self, key: str, default: Any, choices: tuple[str, ...], upper: bool = False) -> Any:
        value = self.string(key, default)
        if value is None:
            return None
        value = value.upper() if upper else value
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def path(self, key: str, default: str) -> Path:
        return self.reader.resolve(self.string(key, default))

    def existing_file(self, key: str) -> Path | None:
        text = self.string(key, None)
        if text is None:
            return None
        path = self.reader.resolve(text)
        if not path.is_file():
            raise self.error(key, f"file not found: {path}")
        return path

    def timezone(self, key: str, default: str) -> ZoneInfo:
        name = self.string(key, default)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error(key, f"unknown timezone {name!r}") from None

    def encoding(self, key: str, default: str) -> str:
        name = self.string(key, default)
        try:
            "".encode(name)
        except LookupError:
            raise self.error(key, f"unknown text encoding {name!r}") from None
        return name

    def url(self, key: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.string(key, default)
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes:
            raise self.error(key, f"expected a URL starting with {' or '.join(schemes)}://")
        return value

    def secret(self, key: str) -> str:
        """`key`, `key_file` or `key_env`: exactly one of them."""
        given = [k for k in (key, f"{key}_file", f"{key}_env") if k in self.raw]
        self.seen.update((key, f"{key}_file", f"{key}_env"))
        if len(given) != 1:
            raise self.error(key, f"give exactly one of {key}, {key}_file, {key}_env")
        source = given[0]
        value = self.raw[source]
        if not isinstance(value, str):
            raise self.error(source, "expected a string")
        if source.endswith("_file"):
            try:
                return self.reader.resolve(value).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise self.error(source, f"cannot read secret file: {exc.strerror}") from None
        if source.endswith("_env"):
            if value not in os.environ:
                raise self.error(source, f"environment variable {value} is not set")
            return os.environ[value]
        return value

    def backoff(self, key: str) -> tuple[float, ...]:
        value = self.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 86400
            for v in value
        ):
            raise self.error(key, "expected a list of seconds between 0 and 86400")
        return tuple(float(v) for v in value)

    def unique(self, key: str) -> Any:
        value = self.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise self.error(key, "expected true, false or a list of argument names")
