"""Job types: name, handler, policy and parameters, registered once.

A type's name is `group.kind`. Its policy (queue, timeout, tries, backoff, unique, router
lock, priority) can be overridden per type in config `[jobs."TYPE"]`. Legacy names resolve to
their type with a deprecation warning; a few legacy names pick the type by an argument
(`ImportFromRouterJob` + `import_type`, `SendNotificationJob` + `channel`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import ChainMap
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ispqueue.config import QUEUES, Config
from ispqueue.errors import BadJobArgs, ConfigError, UnknownJobType

GROUPS = ("import", "notify", "payment", "router", "system")

# Names an earlier consolidation plan proposed; they resolve once their type is registered.
PLANNED_ALIASES = {
    "ProvisionSingleUserJob": "router.provision_user",
    "BulkSyncUsersToRouterJob": "router.sync_users",
    "SyncActiveSessionsJob": "router.sync_sessions",
}
ARG_ALIASES = {
    "ImportFromRouterJob": ("import_type", {
        "ip_pools": "import.ip_pools",
        "ppp_secrets": "import.ppp_secrets",
        "ppp_customers": "import.ppp_customers",
    }),
    "SendNotificationJob": ("channel", {"sms": "notify.sms", "email": "notify.email"}),
}

KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "list": (list,), "dict": (dict,),
}


@dataclass(frozen=True)
class Param:
    """One job argument: its kind and limits. `parse` accepts JSON values or CLI text."""

    name: str
    kind: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def parse(self, value: Any) -> Any:
        if isinstance(value, str) and self.kind != "str":
            value = self._from_text(value)
        if self.kind in ("int", "float") and isinstance(value, bool):
            raise self._bad(value)
        if not isinstance(value, KINDS[self.kind]):
            raise self._bad(value)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise BadJobArgs(f"argument {self.name}: expected one of {allowed}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise BadJobArgs(f"argument {self.name}: must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise BadJobArgs(f"argument {self.name}: must be at most {self.maximum}, got {value}")
        return float(value) if self.kind == "float" else value

    def _from_text(self, text: str) -> Any:
        if self.kind == "bool":
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise self._bad(text)
        try:
            return json.loads(text)
        except ValueError:
            raise self._bad(text) from None

    def _bad(self, value: Any) -> BadJobArgs:
        return BadJobArgs(f"argument {self.name}: expected {self.kind}, got {value!r}")


@dataclass(frozen=True)
class Policy:
    queue: str
    timeout: float
    tries: int = 1
    backoff: tuple[float, ...] = ()
    # True: duplicates are the same type + router + all args; a tuple: only those args;
    # False: every enqueue makes a new job.
    unique: bool | tuple[str, ...] = True
    router_lock: bool = False
    priority: int = 0


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Callable[..., Any]
    policy: Policy
    params: tuple[Param, ...] = ()
    legacy: tuple[str, ...] = ()
    needs_router: bool = False
    # "routers": a scheduled run fans out one job per enabled router; "queues": one per queue.
    fan_out: str | None = None
    # The argument naming the queue to run on, for types that run on any queue.
    queue_arg: str | None = None
    description: str = ""
    # A type that runs for one router when given one and for every router otherwise.
    router_optional: bool = False

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    def validate_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check and coerce arguments; unknown or missing ones are BadJobArgs."""
        known = {p.name: p for p in self.params}
        for name in args:
            if name not in known:
                raise BadJobArgs(f"{self.name}: unknown argument {name!r}"
                                 f" (accepts: {', '.join(known) or 'none'})")
        clean = {}
        for param in self.params:
            if param.name in args and args[param.name] is not None:
                clean[param.name] = param.parse(args[param.name])
            elif param.required:
                raise BadJobArgs(f"{self.name}: argument {param.name} is required")
            elif param.default is not None:
                clean[param.name] = param.default
        return clean

    def queue_for(self, args: dict[str, Any]) -> str:
        return args.get(self.queue_arg, self.policy.queue) if self.queue_arg else self.policy.queue

    def unique_key(self, args: dict[str, Any], router: str | None) -> str | None:
        """The key two duplicate jobs share, or None when the type allows duplicates."""
        unique = self.policy.unique
        if unique is False:
            return None
        picked = args if unique is True else {k: args.get(k) for k in unique}
        blob = json.dumps([router, picked], sort_keys=True, separators=(",", ":"))
        return f"{self.name}:{hashlib.sha256(blob.encode()).hexdigest()[:40]}"


@dataclass
class Registry:
    """Every job type this process knows, by name and by legacy name."""

    types: MutableMapping[str, JobType] = field(default_factory=dict)
    legacy: MutableMapping[str, str] = field(default_factory=dict)

    def register(self, name: str, *, queue: str, timeout: float, tries: int = 1,
                 backoff: Iterable[float] = (), unique: bool | tuple[str, ...] = True,
                 router_lock: bool = False, priority: int = 0, params: Iterable[Param] = (),
                 legacy: Iterable[str] = (), needs_router: bool = False,
                 fan_out: str | None = None, queue_arg: str | None = None,
                 description: str = "", router_optional: bool = False
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register `handler(ctx)` as job type `name`."""
        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            policy = Policy(queue, float(timeout), tries, tuple(backoff), unique,
                            router_lock, priority)
            self.add(JobType(name, handler, policy, tuple(params), tuple(legacy), needs_router,
                             fan_out or ("routers" if needs_router else None), queue_arg,
                             description or (handler.__doc__ or "").strip(),
                             router_optional))
            return handler
        return decorate

    def add(self, job_type: JobType) -> None:
        group, _, kind = job_type.name.partition(".")
        if group not in GROUPS or not kind:
            raise ValueError(f"job type {job_type.name!r}: expected group.kind, group one of "
                             f"{', '.join(GROUPS)}")
        if job_type.policy.queue not in QUEUES:
            raise ValueError(f"job type {job_type.name!r}: unknown queue {job_type.policy.queue}")
        if job_type.name in self.types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self.types[job_type.name] = job_type
        for old in job_type.legacy:
            self.legacy[old] = job_type.name

    def get(self, name: str) -> JobType:
        """The type registered under exactly `name` (no aliases)."""
        try:
            return self.types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}") from None

    def resolve(self, name: str, args: dict[str, Any] | None = None
                ) -> tuple[JobType, dict[str, Any], str | None]:
        """(type, args, deprecation warning or None) for a name or legacy name."""
        args = dict(args or {})
        if name in self.types:
            return self.types[name], args, None
        target = self.legacy.get(name) or PLANNED_ALIASES.get(name)
        if name in ARG_ALIASES:
            target = self._arg_alias(name, args)
        if target is None:
            raise UnknownJobType(f"unknown job type {name!r} (see `ispqueue types`)")
        if target not in self.types:
            raise UnknownJobType(f"{name} stands for {target}, which this version does not provide")
        return self.types[target], args, f"{name} is a legacy name; use {target}"

    def _arg_alias(self, name: str, args: dict[str, Any]) -> str:
        key, targets = ARG_ALIASES[name]
        choice = args.pop(key, None)
        if choice not in targets:
            raise BadJobArgs(f"{name}: argument {key} must be one of {', '.join(targets)}")
        return targets[choice]

    def configure(self, config: Config) -> Registry:
        """A view with `[jobs."TYPE"]` overrides applied (types registered here later stay
        visible through it); unknown types are config errors."""
        configured = Registry(ChainMap({}, self.types), ChainMap({}, self.legacy))
        for name, overrides in config.jobs.items():
            if name not in self.types:
                raise ConfigError(f'{config.source}: [jobs."{name}"]: unknown job type')
            job_type = self.types[name]
            policy = dataclasses.replace(job_type.policy, **overrides)
            configured.types[name] = dataclasses.replace(job_type, policy=policy)
        for name in config.schedule:
            if name not in self.types:
                raise ConfigError(f'{config.source}: [schedule] "{name}": unknown job type')
        return configured


registry = Registry()
