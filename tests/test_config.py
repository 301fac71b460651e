"""Config loading: every section and key, secrets, paths, the search order, and malformed files
rejected with the file and the key named."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ispqueue.config import (
    DEFAULT_SCHEDULE,
    DEFAULT_WORKERS,
    QUEUES,
    Config,
    find_config_path,
    load_config,
)
from ispqueue.errors import ConfigError
from ispqueue.registry import Registry

FULL = """\
[ispqueue]
data_dir = "state"
timezone = "Asia/Dhaka"

[database]
url = "postgresql://ledger:db-s3cret@db.example.net:5432/ispqueue"

[queue]
backend = "redis"
path = "queue/queue.db"
url = "redis://:redis-s3cret@127.0.0.1:6379/3"
grace_seconds = 45
poll_seconds = 0.5

[queue.workers]
imports = 3
notifications = 4
provisioning = 1
payments = 2
default = 0

[logging]
level = "warning"
file = "logs/ispqueue.jsonl"
rotation = "50 MB"
retention = 20
json_stderr = true

[[routers]]
name = "core-1"
host = "10.0.0.1"
port = 8729
username = "api"
password = "inline-pw"
tls = true
tls_verify = false
ca_file = "certs/ca.pem"
timeout = 7.5
encoding = "cp1252"
fallback_encoding = "utf-8"
login_method = "plain"
auth_mode = "radius"
identity = "Core One"
enabled = false

[[routers]]
name = "edge-2"
host = "edge-2.example.net"
username = "api"
password_file = "secrets/edge-2.pw"

[[routers]]
name = "edge-3"
host = "10.0.0.3"
username = "api"
password_env = "ISPQ_TEST_EDGE3_PW"

[jobs."system.canary"]
queue = "payments"
timeout = 30
tries = 4
backoff = [5, 10.5]
unique = ["queue"]
router_lock = true
priority = 7

[schedule]
"system.canary" = "*/5 * * * *"
"""


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("ISPQ_TEST_EDGE3_PW", "env-pw")
    write(tmp_path, "ca\n", "certs/ca.pem")
    write(tmp_path, "file-pw\n", "secrets/edge-2.pw")
    return load_config(str(write(tmp_path, FULL)))


# -- a valid file -------------------------------------------------------------------------------


def test_full_config_loads_every_section(full_config: Config, tmp_path: Path) -> None:
    c = full_config
    assert c.path == tmp_path / "config.toml"
    assert c.data_dir == tmp_path / "state"
    assert c.timezone == ZoneInfo("Asia/Dhaka")
    assert c.database_url == "postgresql://ledger:db-s3cret@db.example.net:5432/ispqueue"

    assert c.queue.backend == "redis"
    assert c.queue.path == tmp_path / "queue" / "queue.db"
    assert c.queue.url == "redis://:redis-s3cret@127.0.0.1:6379/3"
    assert c.queue.workers == {"imports": 3, "notifications": 4, "provisioning": 1,
                               "payments": 2, "default": 0}
    assert c.queue.grace_seconds == 45.0
    assert c.queue.poll_seconds == 0.5

    assert c.logging.level == "WARNING"
    assert c.logging.file == tmp_path / "logs" / "ispqueue.jsonl"
    assert c.logging.rotation == "50 MB"
    assert c.logging.retention == 20
    assert c.logging.json_stderr is True

    assert c.jobs == {"system.canary": {
        "queue": "payments", "timeout": 30.0, "tries": 4, "backoff": (5.0, 10.5),
        "unique": ("queue",), "router_lock": True, "priority": 7,
    }}
    assert set(c.schedule) == set(DEFAULT_SCHEDULE)
    assert c.schedule["system.canary"].text == "*/5 * * * *"
    assert c.schedule["system.canary"].timezone == ZoneInfo("Asia/Dhaka")


def test_full_config_routers(full_config: Config, tmp_path: Path) -> None:
    core, edge2, edge3 = full_config.routers
    assert (core.name, core.host, core.port, core.username) == ("core-1", "10.0.0.1", 8729, "api")
    assert core.password == "inline-pw"
    assert core.tls is True and core.tls_verify is False
    assert core.ca_file == tmp_path / "certs" / "ca.pem"
    assert core.timeout == 7.5
    assert (core.encoding, core.fallback_encoding) == ("cp1252", "utf-8")
    assert (core.login_method, core.auth_mode) == ("plain", "radius")
    assert core.identity == "Core One"
    assert core.enabled is False

    # Defaults for a router that gives only what is required.
    assert edge2.port == 8728 and edge2.tls is False and edge2.tls_verify is True
    assert edge2.ca_file is None and edge2.timeout == 10.0
    assert (edge2.encoding, edge2.fallback_encoding) == ("utf-8", "latin-1")
    assert (edge2.login_method, edge2.auth_mode) == ("auto", "router")
    assert edge2.identity is None and edge2.enabled is True
    assert full_config.router("edge-3") is edge3


def test_tls_router_defaults_to_api_ssl_port(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, """\
        [[routers]]
        name = "r1"
        host = "10.0.0.1"
        username = "api"
        password = "x"
        tls = true
    """)))
    assert config.routers[0].port == 8729


def test_secret_sources(full_config: Config) -> None:
    passwords = {r.name: r.password for r in full_config.routers}
    # The file's trailing newline is not part of the password.
    assert passwords == {"core-1": "inline-pw", "edge-2": "file-pw", "edge-3": "env-pw"}


def test_password_file_keeps_inner_whitespace(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text(" two words \r\n", encoding="utf-8")
    config = load_config(str(write(tmp_path, """\
        [[routers]]
        name = "r1"
        host = "h"
        username = "u"
        password_file = "pw.txt"
    """)))
    assert config.routers[0].password == " two words "


def test_secrets_lists_router_and_url_passwords(full_config: Config) -> None:
    assert set(full_config.secrets()) == {"inline-pw", "file-pw", "env-pw", "db-s3cret",
                                          "redis-s3cret"}


def test_repr_shows_no_password(full_config: Config) -> None:
    text = repr(full_config)
    for secret in full_config.secrets():
        assert secret not in text
    assert "core-1" in text  # the repr still says something useful


def test_unknown_router_name(full_config: Config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        full_config.router("nosuch")
    assert str(tmp_path / "config.toml") in str(caught.value)
    assert "'nosuch'" in str(caught.value)


def test_configure_accepts_the_full_config(full_config: Config, test_registry: Registry) -> None:
    configured = test_registry.configure(full_config)
    policy = configured.get("system.canary").policy
    assert (policy.queue, policy.timeout, policy.tries, policy.priority) == ("payments", 30.0, 4, 7)


# -- paths --------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    path = write(etc, """\
        [ispqueue]
        data_dir = "var"
        [queue]
        path = "../spool/q.db"
        [logging]
        file = "log/out.jsonl"
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(str(path))
    assert config.data_dir == etc / "var"
    assert config.queue.path == etc / "../spool/q.db"
    assert config.logging.file == etc / "log" / "out.jsonl"
    assert config.database_url == f"sqlite:///{etc / 'var' / 'ispqueue.db'}"


def test_relative_config_path_still_puts_the_data_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `ispqueue --config config.toml` from the config's own directory: the default database
    # must land in ./var, not in /var at the root of the filesystem.
    write(tmp_path, '[ispqueue]\ndata_dir = "var"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("config.toml")
    assert config.data_dir.is_absolute()
    assert config.data_dir == tmp_path / "var"
    assert config.database_url == f"sqlite:///{tmp_path / 'var' / 'ispqueue.db'}"


def test_absolute_paths_stay(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, f'[ispqueue]\ndata_dir = "{tmp_path / "abs"}"\n')))
    assert config.data_dir == tmp_path / "abs"


def test_empty_log_file_turns_the_file_off(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, '[logging]\nfile = ""\n')))
    assert config.logging.file is None


# -- defaults and the search order --------------------------------------------------------------

no_system_config = pytest.mark.skipif(
    Path("/etc/ispqueue/config.toml").exists(),
    reason="this machine has /etc/ispqueue/config.toml, which comes before ./config.toml",
)


@no_system_config
def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISPQUEUE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.path is None
    assert config.source == "built-in defaults"
    assert config.data_dir == Path("/var/lib/ispqueue")
    assert config.timezone == ZoneInfo("UTC")
    assert config.database_url == "sqlite:////var/lib/ispqueue/ispqueue.db"
    assert config.queue.backend == "sqlite"
    assert config.queue.path == Path("/var/lib/ispqueue/queue.db")
    assert config.queue.workers == DEFAULT_WORKERS
    assert set(config.queue.workers) == set(QUEUES)
    assert config.queue.grace_seconds == 30.0
    assert config.logging.level == "INFO"
    assert config.logging.file == Path("/var/lib/ispqueue/logs/ispqueue.jsonl")
    assert config.routers == ()
    assert config.jobs == {}
    assert {name: cron.text for name, cron in config.schedule.items()} == DEFAULT_SCHEDULE
    assert config.schedule["system.canary"].text == "* * * * *"
    assert config.secrets() == []


def test_default_canary_schedule_can_be_switched_off(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, '[schedule]\n"system.canary" = false\n')))
    assert "system.canary" not in config.schedule
    assert set(config.schedule) == set(DEFAULT_SCHEDULE) - {"system.canary"}


def test_env_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[ispqueue]\ntimezone = "Asia/Dhaka"\n', "from-env.toml")
    monkeypatch.setenv("ISPQUEUE_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    assert find_config_path(None) == path
    assert load_config(None).timezone == ZoneInfo("Asia/Dhaka")


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = write(tmp_path, '[ispqueue]\ntimezone = "Asia/Dhaka"\n', "env.toml")
    explicit = write(tmp_path, '[ispqueue]\ntimezone = "Europe/Berlin"\n', "explicit.toml")
    monkeypatch.setenv("ISPQUEUE_CONFIG", str(from_env))
    config = load_config(str(explicit))
    assert config.path == explicit
    assert config.timezone == ZoneInfo("Europe/Berlin")


@no_system_config
def test_env_wins_over_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[ispqueue]\ntimezone = "Europe/Berlin"\n')
    from_env = write(tmp_path, '[ispqueue]\ntimezone = "Asia/Dhaka"\n', "env.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISPQUEUE_CONFIG", str(from_env))
    assert load_config(None).timezone == ZoneInfo("Asia/Dhaka")
    monkeypatch.delenv("ISPQUEUE_CONFIG")
    assert find_config_path(None) == Path("config.toml")
    assert load_config(None).timezone == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("how", ["explicit", "env"])
def test_named_file_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        how: str) -> None:
    missing = tmp_path / "nope.toml"
    if how == "env":
        monkeypatch.setenv("ISPQUEUE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_config(str(missing) if how == "explicit" else None)
    assert str(missing) in str(caught.value)


# -- malformed files ----------------------------------------------------------------------------

ROUTER = """\
[[routers]]
name = "core-1"
host = "10.0.0.1"
username = "api"
"""

BAD_CONFIGS = {
    "unknown top-level section": ("[frobnicate]\nx = 1\n", "frobnicate: unknown key"),
    "unknown key in [ispqueue]": ('[ispqueue]\ndatadir = "x"\n', "[ispqueue] datadir: unknown"),
    "unknown key in [queue]": ("[queue]\nbogus = 1\n", "[queue] bogus: unknown key"),
    "queue is not a table": ('queue = "sqlite"\n', "queue: expected a table"),
    "bad queue backend": ('[queue]\nbackend = "rabbitmq"\n', "[queue] backend:"),
    "bad redis url": ('[queue]\nurl = "http://x"\n', "[queue] url:"),
    "wrong type for port": (ROUTER + 'password = "x"\nport = "8728"\n',
                            "[[routers]] 'core-1' port: expected an integer"),
    "port out of range": (ROUTER + 'password = "x"\nport = 70000\n',
                          "[[routers]] 'core-1' port: must be between 1 and 65535"),
    "port is a bool": (ROUTER + 'password = "x"\nport = true\n',
                       "[[routers]] 'core-1' port: expected an integer"),
    "two routers with one name": (ROUTER + 'password = "x"\n' + ROUTER + 'password = "y"\n',
                                  "[[routers]] #2 name: duplicate router name 'core-1'"),
    "router missing host": ('[[routers]]\nname = "core-1"\nusername = "api"\npassword = "x"\n',
                            "[[routers]] 'core-1' host: required key is missing"),
    "router missing name": ('[[routers]]\nhost = "h"\nusername = "api"\npassword = "x"\n',
                            "[[routers]] #1 name: required key is missing"),
    "router name with a space": ('[[routers]]\nname = "core 1"\nhost = "h"\n',
                                 "[[routers]] #1 name:"),
    "routers is a table": ('[routers]\nname = "x"\n', "routers: expected an array"),
    "unknown router key": (ROUTER + 'password = "x"\nssl = true\n',
                           "[[routers]] 'core-1' ssl: unknown key"),
    "no password at all": (ROUTER, "[[routers]] 'core-1' password: give exactly one of"),
    "both password and password_env": (ROUTER + 'password = "x"\npassword_env = "HOME"\n',
                                       "[[routers]] 'core-1' password: give exactly one of"),
    "password_env naming an unset variable": (
        ROUTER + 'password_env = "ISPQ_TEST_SURELY_UNSET"\n',
        "[[routers]] 'core-1' password_env: environment variable ISPQ_TEST_SURELY_UNSET"),
    "password_file missing": (ROUTER + 'password_file = "no-such.pw"\n',
                              "[[routers]] 'core-1' password_file: cannot read secret file"),
    "password not a string": (ROUTER + "password = 1234\n",
                              "[[routers]] 'core-1' password: expected a string"),
    "ca_file that does not exist": (ROUTER + 'password = "x"\nca_file = "no-ca.pem"\n',
                                    "[[routers]] 'core-1' ca_file: file not found"),
    "unknown encoding": (ROUTER + 'password = "x"\nencoding = "klingon-8"\n',
                         "[[routers]] 'core-1' encoding: unknown text encoding 'klingon-8'"),
    "bad auth_mode": (ROUTER + 'password = "x"\nauth_mode = "ldap"\n',
                      "[[routers]] 'core-1' auth_mode: expected one of router, radius"),
    "bad timezone": ('[ispqueue]\ntimezone = "Mars/Olympus"\n',
                     "[ispqueue] timezone: unknown timezone 'Mars/Olympus'"),
    "bad database URL scheme": ('[database]\nurl = "mysql://db/ispqueue"\n',
                                "[database] url: expected a URL starting with sqlite"),
    "database URL without a scheme": ('[database]\nurl = "/var/lib/x.db"\n', "[database] url:"),
    "unknown queue in [queue.workers]": ("[queue.workers]\nbulk = 2\n",
                                         "[queue.workers] bulk: unknown key"),
    "negative workers": ("[queue.workers]\ndefault = -1\n",
                         "[queue.workers] default: must be between 0 and 64"),
    "workers not an integer": ("[queue.workers]\ndefault = 1.5\n",
                               "[queue.workers] default: expected an integer"),
    "grace_seconds negative": ("[queue]\ngrace_seconds = -1\n", "[queue] grace_seconds:"),
    "bad log level": ('[logging]\nlevel = "LOUD"\n', "[logging] level: expected one of"),
    "retention zero": ("[logging]\nretention = 0\n", "[logging] retention:"),
    "bad backoff list": ('[jobs."system.canary"]\nbackoff = [10, "x"]\n',
                         '[jobs."system.canary"] backoff: expected a list of seconds'),
    "negative backoff": ('[jobs."system.canary"]\nbackoff = [-5]\n',
                         '[jobs."system.canary"] backoff:'),
    "unknown policy key": ('[jobs."system.canary"]\nretries = 3\n',
                           '[jobs."system.canary"] retries: unknown key'),
    "override with unknown queue": ('[jobs."system.canary"]\nqueue = "bulk"\n',
                                    '[jobs."system.canary"] queue: expected one of'),
    "tries zero": ('[jobs."system.canary"]\ntries = 0\n', '[jobs."system.canary"] tries:'),
    "unique of numbers": ('[jobs."system.canary"]\nunique = [1, 2]\n',
                          '[jobs."system.canary"] unique:'),
    "jobs entry not a table": ('[jobs]\n"system.canary" = 5\n', '[jobs."system.canary"]'),
    "bad cron expression": ('[schedule]\n"system.canary" = "*/5 * * *"\n',
                            '[schedule] "system.canary": bad cron expression: expected 5 fields'),
    "cron field out of range": ('[schedule]\n"system.canary" = "61 * * * *"\n',
                                '[schedule] "system.canary": bad cron expression'),
    "cron not a string": ('[schedule]\n"system.canary" = 5\n',
                          '[schedule] "system.canary": expected a cron string or false'),
}


@pytest.mark.parametrize("text, key", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_malformed_config_names_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             text: str, key: str) -> None:
    monkeypatch.delenv("ISPQ_TEST_SURELY_UNSET", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert "\n" not in message


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[ispqueue]\ntimezone = "UTC"\ndata_dir = \n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 3" in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[ispqueue]\ntimezone = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}: ")


def test_unknown_job_type_in_schedule_is_named_by_configure(
        tmp_path: Path, test_registry: Registry) -> None:
    path = write(tmp_path, '[schedule]\n"router.nosuch" = "0 * * * *"\n')
    config = load_config(str(path))
    with pytest.raises(ConfigError) as caught:
        test_registry.configure(config)
    assert str(caught.value) == f'{path}: [schedule] "router.nosuch": unknown job type'


def test_unknown_job_type_in_jobs_is_named_by_configure(
        tmp_path: Path, test_registry: Registry) -> None:
    path = write(tmp_path, '[jobs."router.nosuch"]\ntries = 2\n')
    config = load_config(str(path))
    with pytest.raises(ConfigError) as caught:
        test_registry.configure(config)
    assert str(caught.value) == f'{path}: [jobs."router.nosuch"]: unknown job type'


def test_password_env_is_read_at_load_time(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISPQ_TEST_PW", "first")
    path = write(tmp_path, ROUTER + 'password_env = "ISPQ_TEST_PW"\n')
    config = load_config(str(path))
    monkeypatch.setenv("ISPQ_TEST_PW", "second")
    assert config.routers[0].password == "first"
    assert os.environ["ISPQ_TEST_PW"] == "second"


def test_example_config_loads(tmp_path: Path, test_registry: Registry) -> None:
    """config.example.toml stays a file the loader accepts (secrets pointed at a temp file)."""
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    (tmp_path / "router.pw").write_text("pw\n", encoding="utf-8")
    text = re.sub(r'(?m)^(password_file\s*=\s*)".*"', r'\1"router.pw"', text)
    config = load_config(str(write(tmp_path, text)))
    test_registry.configure(config)
    assert config.path == tmp_path / "config.toml"
