"""The `ispqueue` command: parse, call one function, print. No logic lives here.

Exit codes: 0 success; 1 the job (with --wait) or a check failed; 2 bad input, with one line
on stderr naming what is wrong and nothing written.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ispqueue import report
from ispqueue.config import QUEUES, Config, load_config
from ispqueue.errors import BadInput, ConfigError
from ispqueue.models import STATES


class Group(click.Group):
    """Maps every input error, ours or click's, to one stderr line and exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            code = 2 if isinstance(exc, click.UsageError) else exc.exit_code
        except click.Abort:
            click.echo("aborted", err=True)
            code = 1
        except BadInput as exc:
            click.echo(f"error: {exc}", err=True)
            code = 2
        sys.exit(code or 0)


class Session:
    """What the commands share: the config path, --json, and the lazily opened runtime."""

    def __init__(self, config_path: str | None, as_json: bool):
        self.config_path = config_path
        self.as_json = as_json
        self._config: Config | None = None
        self._runtime: Any = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def runtime(self, *, writes: bool = False, migrate: bool = False) -> Any:
        """Open the installation; commands that change jobs also log to the JSON file."""
        if self._runtime is None:
            from ispqueue.observability.logs import setup_logging
            from ispqueue.runtime import Runtime, require_schema

            runtime = Runtime(self.config, migrate=migrate)
            if not migrate:
                require_schema(runtime.db)
            logging = self.config.logging
            if writes:
                # The daemon's user owns the log file; a person running a command as
                # someone else still gets the command done, with the line only in the ledger.
                try:
                    setup_logging(logging, self.config.secrets(), stderr=False)
                except ConfigError:
                    setup_logging(_without_file(logging), self.config.secrets(), stderr=False)
            else:
                setup_logging(_without_file(logging), self.config.secrets(), stderr=False)
            self._runtime = runtime
        return self._runtime

    def emit(self, data: Any, text: str | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        elif text is not None:
            click.echo(text)


def _without_file(logging: Any) -> Any:
    import dataclasses

    return dataclasses.replace(logging, file=None)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _session(ctx: click.Context, as_json: bool = False) -> Session:
    session: Session = ctx.obj
    session.as_json = session.as_json or as_json
    return session


@click.group(cls=Group)
@click.option("--config", "config_path", metavar="PATH",
              help="Config file (default $ISPQUEUE_CONFIG, /etc/ispqueue/config.toml, "
                   "./config.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON from listings and shows.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """ispqueue: the job daemon for small ISPs running MikroTik routers."""
    ctx.obj = Session(config_path, as_json)


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data dir, databases and migrations (safe to repeat)."""
    from ispqueue.observability.logs import setup_logging
    from ispqueue.runtime import initialise

    session = _session(ctx)
    setup_logging(session.config.logging, session.config.secrets(), stderr=False)

    summary = initialise(session.config)
    session.emit(summary, report.format_init(summary))


@main.command()
@click.option("--queues", metavar="a,b",
              help=f"Queues to consume (default all: {','.join(QUEUES)}).")
@click.option("--no-scheduler", is_flag=True, help="Do not fire [schedule] entries here.")
@click.pass_context
def run(ctx: click.Context, queues: str | None, no_scheduler: bool) -> None:
    """Run the daemon: consumers, scheduler, sweeper."""
    from ispqueue.daemon import Daemon, check_queue_names
    from ispqueue.observability.logs import setup_logging
    from ispqueue.runtime import Runtime

    config = _session(ctx).config
    names = check_queue_names(queues.split(",")) if queues else None
    setup_logging(config.logging, config.secrets(), stderr=True)
    daemon = Daemon(Runtime(config, migrate=True), names, scheduler=not no_scheduler)
    ctx.exit(daemon.run_forever())


@main.command()
@click.argument("type_name", metavar="TYPE")
@click.option("--router", help="Router name, for router jobs.")
@click.option("--arg", "pairs", multiple=True, metavar="KEY=VALUE", help="A job argument.")
@click.option("--args-json", metavar="JSON", help="Job arguments as a JSON object.")
@click.option("--delay", type=float, metavar="SECONDS", help="Run after this many seconds.")
@click.option("--at", "at_text", metavar="ISO8601", help="Run at this time (with offset).")
@click.option("--priority", type=int, help="Higher runs first within its queue.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish; exit 1 if it failed.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after S s.")
@json_option
@click.pass_context
def enqueue(ctx: click.Context, type_name: str, router: str | None, pairs: tuple[str, ...],
            args_json: str | None, delay: float | None, at_text: str | None,
            priority: int | None, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Enqueue a job; prints its id."""
    session = _session(ctx, as_json)
    args = report.parse_job_args(pairs, args_json)
    at = report.parse_time(at_text) if at_text else None
    rt = session.runtime(writes=True)
    done = rt.enqueue(type_name, args, router=router, delay=delay, at=at, priority=priority,
                      source="cli")
    if done.warning:
        click.echo(f"warning: {done.warning}", err=True)
    if not done.created:
        click.echo(f"note: job {done.job.id} does the same work and is {done.job.status}",
                   err=True)
    if not done.sent:
        click.echo(f"note: queue {done.job.queue} is unreachable; job {done.job.id} stays "
                   "queued and is sent when it is back", err=True)
    job = done.job
    if wait:
        job = report.wait_for(rt, job.id, timeout)
    text = report.format_job(job, tz=session.config.timezone) if wait else str(job.id)
    session.emit(report.job_dict(job), text)
    if wait and job.status != "succeeded":
        ctx.exit(1)


@main.command()
@json_option
@click.pass_context
def types(ctx: click.Context, as_json: bool) -> None:
    """Job types with group, queue, timeout, tries, backoff, legacy names."""
    session = _session(ctx, as_json)
    import ispqueue.jobs  # noqa: F401
    from ispqueue.registry import registry

    configured = registry.configure(session.config)
    rows = report.type_rows(configured)
    session.emit(rows, report.format_types(rows))


@main.group()
def jobs() -> None:
    """List, show, retry, cancel and prune jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(STATES))
@click.option("--type", "type_name")
@click.option("--router")
@click.option("--since", metavar="1h|30m|2d|ISO8601")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@json_option
@click.pass_context
def jobs_list(ctx: click.Context, status: str | None, type_name: str | None,
              router: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Recent jobs, newest first."""
    session = _session(ctx, as_json)
    rt = session.runtime()
    found = report.list_jobs(rt, status=status, type_name=type_name, router=router,
                             since=since, limit=limit)
    session.emit([report.job_dict(j) for j in found],
                 report.format_job_table(found, session.config.timezone))


@jobs.command("show")
@click.argument("job_id", type=int)
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """One job with its events, result and error."""
    session = _session(ctx, as_json)
    job = session.runtime().ledger.get(job_id)
    session.emit(report.job_dict(job, full=True),
                 report.format_job(job, full=True, tz=session.config.timezone))


@jobs.command("retry")
@click.argument("job_id", type=int)
@json_option
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Give a failed or cancelled job another attempt (same row)."""
    session = _session(ctx, as_json)
    rt = session.runtime(writes=True)
    job = rt.ledger.retry(job_id)
    rt.send(job)
    session.emit(report.job_dict(job), f"job {job.id} queued again")


@jobs.command("cancel")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int) -> None:
    """Cancel a waiting job, or ask the daemon to stop a running one."""
    session = _session(ctx)
    outcome = session.runtime(writes=True).ledger.cancel(job_id)
    session.emit({"id": job_id, "outcome": outcome}, f"job {job_id}: {outcome}")


@jobs.command("prune")
@click.option("--older-than", required=True, metavar="30d", help="Age of finished jobs to drop.")
@click.pass_context
def jobs_prune(ctx: click.Context, older_than: str) -> None:
    """Delete finished jobs (and their events) older than the given age."""
    session = _session(ctx)
    age = report.parse_age(older_than)
    count = session.runtime(writes=True).ledger.prune(age)
    session.emit({"deleted": count}, f"deleted {count} finished job(s) older than {older_than}")


@main.command()
@click.option("--since", default="24h", show_default=True, metavar="24h")
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds.")
@json_option
@click.pass_context
def stats(ctx: click.Context, since: str, watch: bool, as_json: bool) -> None:
    """Queue depth, running, per-type counts, p50/p95 duration, failure rate."""
    from ispqueue.observability.stats import collect_stats

    session = _session(ctx, as_json)
    rt = session.runtime()
    while True:
        data = collect_stats(rt, since)
        if watch and not session.as_json:
            click.clear()
        session.emit(data, report.format_stats(data))
        if not watch:
            return
        time.sleep(2)


@main.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--job", "job_id", type=int)
@click.option("--router")
@click.option("--type", "type_name")
@click.option("--level", type=click.Choice(["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING",
                                            "ERROR", "CRITICAL"], case_sensitive=False))
@click.option("--since", metavar="1h|ISO8601")
@json_option
@click.pass_context
def logs(ctx: click.Context, follow: bool, job_id: int | None, router: str | None,
         type_name: str | None, level: str | None, since: str | None, as_json: bool) -> None:
    """Read the JSON-lines log, filtered."""
    from ispqueue.observability import logs as logfile

    session = _session(ctx, as_json)
    path = session.config.logging.file
    if path is None:
        raise BadInput("[logging] file is not set, so there is no log to read")
    filters = dict(job=job_id, router=router, type=type_name,
                   level=level.upper() if level else None,
                   since=logfile.parse_since(since, session.config.timezone) if since else None)
    records = logfile.follow(path, **filters) if follow else logfile.read_records(path, **filters)
    for record in records:
        click.echo(json.dumps(record, sort_keys=True) if session.as_json
                   else logfile.format_record(record, session.config.timezone))


@main.group()
def routers() -> None:
    """List the routers and check them now."""


@routers.command("list")
@json_option
@click.pass_context
def routers_list(ctx: click.Context, as_json: bool) -> None:
    """Routers with their last health check."""
    session = _session(ctx, as_json)
    session.runtime()
    found = report.list_routers()
    session.emit([report.router_dict(r) for r in found], report.format_router_table(found))


@routers.command("check")
@click.argument("name")
@json_option
@click.pass_context
def routers_check(ctx: click.Context, name: str, as_json: bool) -> None:
    """Log in to a router now: identity, version, latency. Exit 1 when it fails."""
    from ispqueue.services.fleet import check_router

    session = _session(ctx, as_json)
    health = check_router(session.config.router(name))
    session.emit(report.health_dict(health), report.format_health(health))
    if health.probe.error is not None:
        ctx.exit(1)


@main.command("sim-router")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8728, show_default=True,
              help="API port (0 picks a free one).")
@click.option("--secrets", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="PPP secrets to generate.")
@click.option("--active", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="Live PPP sessions among them.")
@click.option("--pools", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="IP pools to generate.")
@click.option("--user", default="admin", show_default=True, help="API user name.")
@click.option("--password", default="", help="API password (empty, as on a new router).")
@click.option("--identity", default="MikroTik", show_default=True, help="/system/identity.")
@click.option("--ros-version", default="7.16 (stable)", show_default=True,
              help="RouterOS version to report.")
@click.option("--latency", type=click.FloatRange(0, 60), default=0.0,
              help="Seconds of delay before every reply sentence.")
@click.option("--hang", is_flag=True, help="Read commands, never answer them.")
@click.option("--refuse", is_flag=True, help="Keep the port closed (connections refused).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="Serve API-SSL with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="The certificate's key, if not in the certificate file.")
@click.option("--legacy-login", is_flag=True, help="The pre-6.43 challenge login.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generated data.")
def sim_router(host: str, port: int, secrets: int, active: int, pools: int, user: str,
               password: str, identity: str, ros_version: str, latency: float, hang: bool,
               refuse: bool, tls_cert: str | None, tls_key: str | None, legacy_login: bool,
               seed: int) -> None:
    """Run the RouterOS API simulator until Ctrl-C."""
    from ispqueue.routeros.sim import serve_forever

    if tls_key and not tls_cert:
        raise BadInput("--tls-key needs --tls-cert")

    def ready(sim: Any) -> None:
        click.echo(f"RouterOS API simulator on {sim.host}:{sim.port} (user {sim.username})")

    try:
        serve_forever(port, secrets, active, pools, user, password, host=host, latency=latency,
                      hang=hang, refuse=refuse, tls_cert=tls_cert, tls_key=tls_key,
                      identity=identity, version=ros_version, legacy_login=legacy_login,
                      seed=seed, on_ready=ready)
    except OSError as exc:  # the port is taken, or the certificate cannot be used
        raise BadInput(f"sim-router on {host}:{port}: {exc.strerror or exc}") from None
