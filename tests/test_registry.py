"""The job registry: registration rules, argument parsing, unique keys, legacy names and
config overrides. Throw-away types go on the `test_registry` copy only."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from ispqueue.config import Config
from ispqueue.errors import BadJobArgs, UnknownJobType
from ispqueue.registry import ARG_ALIASES, PLANNED_ALIASES, JobType, Param, Policy, Registry
from ispqueue.registry import registry as product_registry


def noop(ctx: Any) -> None:
    """A handler that is never run here."""


def add(registry: Registry, name: str, **options: Any) -> JobType:
    """Register `name` on the copy, replacing a product type of that name if there is one."""
    registry.types.pop(name, None)
    options.setdefault("queue", "default")
    options.setdefault("timeout", 10)
    registry.register(name, **options)(noop)
    return registry.types[name]


# -- registration -------------------------------------------------------------------------------


def test_register_records_policy_and_legacy(test_registry: Registry) -> None:
    job_type = add(test_registry, "notify.probe", queue="notifications", timeout=120, tries=3,
                   backoff=[60, 300], unique=("to",), router_lock=False, priority=5,
                   legacy=["SendProbeJob"], params=(Param("to", required=True),))
    assert job_type.group == "notify"
    assert job_type.policy == Policy("notifications", 120.0, 3, (60.0, 300.0), ("to",), False, 5)
    assert job_type.description == "A handler that is never run here."
    assert test_registry.legacy["SendProbeJob"] == "notify.probe"
    assert test_registry.get("notify.probe") is job_type


def test_router_types_fan_out_to_routers_by_default(test_registry: Registry) -> None:
    assert add(test_registry, "router.probe", needs_router=True).fan_out == "routers"
    assert add(test_registry, "system.probe").fan_out is None


@pytest.mark.parametrize("group", ["import", "notify", "payment", "router", "system"])
def test_every_group_is_accepted(test_registry: Registry, group: str) -> None:
    assert add(test_registry, f"{group}.probe").group == group


@pytest.mark.parametrize("name", ["billing.probe", "probe", "router.", "Router.probe"])
def test_bad_names_are_rejected(test_registry: Registry, name: str) -> None:
    expected = "expected group.kind, group one of import, notify"
    with pytest.raises(ValueError, match=re.escape(expected)):
        test_registry.register(name, queue="default", timeout=1)(noop)
    assert name not in test_registry.types


def test_unknown_queue_is_rejected(test_registry: Registry) -> None:
    with pytest.raises(ValueError, match=re.escape("'system.probe': unknown queue bulk")):
        test_registry.register("system.probe", queue="bulk", timeout=1)(noop)


def test_duplicate_name_is_rejected(test_registry: Registry) -> None:
    add(test_registry, "system.probe")
    with pytest.raises(ValueError, match=re.escape("'system.probe' is registered twice")):
        test_registry.register("system.probe", queue="default", timeout=1)(noop)


def test_copy_leaves_the_product_registry_alone(test_registry: Registry) -> None:
    add(test_registry, "system.only_in_the_copy", legacy=["OnlyInTheCopyJob"])
    assert "system.only_in_the_copy" not in product_registry.types
    assert "OnlyInTheCopyJob" not in product_registry.legacy


def test_get_is_exact(test_registry: Registry) -> None:
    add(test_registry, "system.probe", legacy=["ProbeJob"])
    with pytest.raises(UnknownJobType, match=re.escape("unknown job type 'ProbeJob'")):
        test_registry.get("ProbeJob")


def test_product_registry_has_the_canary() -> None:
    import ispqueue.jobs  # noqa: F401

    canary = product_registry.get("system.canary")
    assert (canary.policy.queue, canary.policy.timeout, canary.policy.tries) == ("default", 60, 1)
    assert canary.fan_out == "queues" and canary.queue_arg == "queue"
    assert canary.queue_for({"queue": "imports"}) == "imports"
    assert canary.queue_for({}) == "default"


# -- Param.parse --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, given, parsed", [
    ("int", "42", 42),
    ("int", 42, 42),
    ("int", "-3", -3),
    ("float", "1.5", 1.5),
    ("float", 2, 2.0),
    ("float", "3", 3.0),
    ("bool", "true", True),
    ("bool", "YES", True),
    ("bool", "on", True),
    ("bool", "1", True),
    ("bool", "false", False),
    ("bool", "No", False),
    ("bool", "off", False),
    ("bool", "0", False),
    ("bool", False, False),
    ("str", "42", "42"),
    ("str", "", ""),
    ("str", "hello world", "hello world"),
    ("list", '["a", 2]', ["a", 2]),
    ("list", ["a"], ["a"]),
    ("dict", '{"a": {"b": 1}}', {"a": {"b": 1}}),
    ("dict", {"x": None}, {"x": None}),
])
def test_param_parses_text_and_json(kind: str, given: Any, parsed: Any) -> None:
    value = Param("value", kind).parse(given)
    assert value == parsed
    assert type(value) is type(parsed)


@pytest.mark.parametrize("kind, given", [
    ("int", True),
    ("int", "true"),
    ("int", "1.5"),
    ("int", 1.5),
    ("int", "twelve"),
    ("int", ""),
    ("float", True),
    ("float", "fast"),
    ("float", [1]),
    ("bool", "maybe"),
    ("bool", 1),
    ("str", 42),
    ("str", None),
    ("list", '{"a": 1}'),
    ("list", "a,b"),
    ("dict", "[1]"),
    ("dict", "not json"),
])
def test_param_rejects_wrong_kinds_naming_the_argument(kind: str, given: Any) -> None:
    with pytest.raises(BadJobArgs) as caught:
        Param("size", kind).parse(given)
    assert str(caught.value).startswith(f"argument size: expected {kind}, got ")


def test_param_choices() -> None:
    param = Param("channel", choices=("sms", "email"))
    assert param.parse("sms") == "sms"
    with pytest.raises(BadJobArgs) as caught:
        param.parse("fax")
    assert str(caught.value) == "argument channel: expected one of sms, email, got 'fax'"


def test_param_int_choices_from_text() -> None:
    assert Param("level", "int", choices=(1, 2, 3)).parse("2") == 2
    expected = "argument level: expected one of 1, 2, 3, got 4"
    with pytest.raises(BadJobArgs, match=re.escape(expected)):
        Param("level", "int", choices=(1, 2, 3)).parse("4")


def test_param_minimum_and_maximum() -> None:
    param = Param("hold_seconds", "float", minimum=0, maximum=60)
    assert param.parse("0") == 0.0
    assert param.parse("60") == 60.0
    with pytest.raises(BadJobArgs) as low:
        param.parse("-0.5")
    assert str(low.value) == "argument hold_seconds: must be at least 0, got -0.5"
    with pytest.raises(BadJobArgs) as high:
        param.parse(61)
    assert str(high.value) == "argument hold_seconds: must be at most 60, got 61"


# -- validate_args ------------------------------------------------------------------------------


@pytest.fixture
def sender(test_registry: Registry) -> JobType:
    return add(test_registry, "notify.probe", queue="notifications", params=(
        Param("to", "list", required=True),
        Param("template", default="generic"),
        Param("retries", "int", minimum=0),
    ))


def test_validate_fills_defaults_and_parses(sender: JobType) -> None:
    assert sender.validate_args({"to": '["8801700000000"]', "retries": "2"}) == {
        "to": ["8801700000000"], "template": "generic", "retries": 2}


def test_validate_treats_none_as_absent(sender: JobType) -> None:
    assert sender.validate_args({"to": ["x"], "retries": None}) == {"to": ["x"],
                                                                    "template": "generic"}


def test_unknown_argument_is_named(sender: JobType) -> None:
    with pytest.raises(BadJobArgs) as caught:
        sender.validate_args({"to": ["x"], "subjct": "hi"})
    assert str(caught.value) == ("notify.probe: unknown argument 'subjct' "
                                 "(accepts: to, template, retries)")


def test_unknown_argument_for_a_type_without_params(test_registry: Registry) -> None:
    with pytest.raises(BadJobArgs, match=re.escape("unknown argument 'x' (accepts: none)")):
        add(test_registry, "system.probe").validate_args({"x": 1})


def test_missing_required_argument_is_named(sender: JobType) -> None:
    with pytest.raises(BadJobArgs) as caught:
        sender.validate_args({"template": "t"})
    assert str(caught.value) == "notify.probe: argument to is required"


def test_bad_value_names_the_argument(sender: JobType) -> None:
    with pytest.raises(BadJobArgs, match=re.escape("argument retries: must be at least 0, got -1")):
        sender.validate_args({"to": ["x"], "retries": -1})


# -- unique keys --------------------------------------------------------------------------------


def test_same_args_in_any_order_share_a_key(test_registry: Registry) -> None:
    job_type = add(test_registry, "router.probe", needs_router=True)
    one = job_type.unique_key({"a": 1, "b": [1, 2], "c": {"x": 1, "y": 2}}, "r1")
    two = job_type.unique_key({"c": {"y": 2, "x": 1}, "b": [1, 2], "a": 1}, "r1")
    assert one == two
    assert one.startswith("router.probe:")


def test_key_depends_on_router_args_and_type(test_registry: Registry) -> None:
    probe = add(test_registry, "router.probe", needs_router=True)
    other = add(test_registry, "router.other_probe", needs_router=True)
    base = probe.unique_key({"a": 1}, "r1")
    assert probe.unique_key({"a": 1}, "r2") != base
    assert probe.unique_key({"a": 2}, "r1") != base
    assert probe.unique_key({"a": 1, "b": 1}, "r1") != base
    assert other.unique_key({"a": 1}, "r1") != base


def test_tuple_policy_keys_only_on_the_listed_args(test_registry: Registry) -> None:
    job_type = add(test_registry, "payment.probe", queue="payments", unique=("reference",))
    key = job_type.unique_key({"reference": "TX-1", "amount": 100}, None)
    assert job_type.unique_key({"reference": "TX-1", "amount": 999, "note": "x"}, None) == key
    assert job_type.unique_key({"reference": "TX-2", "amount": 100}, None) != key


def test_not_unique_means_no_key(test_registry: Registry) -> None:
    assert add(test_registry, "system.probe", unique=False).unique_key({"a": 1}, None) is None


def test_key_fits_the_ledger_column(test_registry: Registry) -> None:
    job_type = add(test_registry, "import.a_rather_long_kind_name_for_a_probe")
    assert len(job_type.unique_key({"x": "y" * 10000}, "router-" * 8)) <= 255


# -- legacy names and aliases -------------------------------------------------------------------


def test_current_name_resolves_without_warning(test_registry: Registry) -> None:
    add(test_registry, "router.probe", needs_router=True)
    job_type, args, warning = test_registry.resolve("router.probe", {"a": 1})
    assert (job_type.name, args, warning) == ("router.probe", {"a": 1}, None)


def test_legacy_name_resolves_with_a_deprecation_warning(test_registry: Registry) -> None:
    add(test_registry, "router.probe", legacy=["ProbeRouterJob"], needs_router=True)
    job_type, args, warning = test_registry.resolve("ProbeRouterJob", {"a": 1})
    assert job_type.name == "router.probe"
    assert args == {"a": 1}
    assert warning == "ProbeRouterJob is a legacy name; use router.probe"


def test_unknown_name(test_registry: Registry) -> None:
    with pytest.raises(UnknownJobType) as caught:
        test_registry.resolve("router.nosuch")
    assert str(caught.value) == "unknown job type 'router.nosuch' (see `ispqueue types`)"


def test_resolve_does_not_change_the_callers_args(test_registry: Registry) -> None:
    add(test_registry, "import.ip_pools")
    given = {"import_type": "ip_pools"}
    test_registry.resolve("ImportFromRouterJob", given)
    assert given == {"import_type": "ip_pools"}


@pytest.mark.parametrize("legacy, key", [(name, spec[0]) for name, spec in ARG_ALIASES.items()])
def test_arg_discriminated_legacy_names(test_registry: Registry, legacy: str, key: str) -> None:
    _, targets = ARG_ALIASES[legacy]
    for choice, target in targets.items():
        add(test_registry, target)
        job_type, args, warning = test_registry.resolve(legacy, {key: choice, "dry_run": True})
        assert job_type.name == target
        assert args == {"dry_run": True}  # the discriminator is not passed on
        assert warning == f"{legacy} is a legacy name; use {target}"


def test_import_from_router_picks_the_import(test_registry: Registry) -> None:
    for target in ("import.ip_pools", "import.ppp_secrets", "import.ppp_customers"):
        add(test_registry, target)
    picked = {choice: test_registry.resolve("ImportFromRouterJob", {"import_type": choice})[0].name
              for choice in ("ip_pools", "ppp_secrets", "ppp_customers")}
    assert picked == {"ip_pools": "import.ip_pools", "ppp_secrets": "import.ppp_secrets",
                      "ppp_customers": "import.ppp_customers"}


def test_send_notification_picks_the_channel(test_registry: Registry) -> None:
    add(test_registry, "notify.sms", queue="notifications")
    add(test_registry, "notify.email", queue="notifications")
    assert test_registry.resolve("SendNotificationJob", {"channel": "sms"})[0].name == "notify.sms"
    assert test_registry.resolve("SendNotificationJob",
                                 {"channel": "email"})[0].name == "notify.email"


@pytest.mark.parametrize("args", [{}, {"import_type": "ppp_profiles"}, {"import_type": None}])
def test_arg_alias_without_a_valid_discriminator(test_registry: Registry,
                                                 args: dict[str, Any]) -> None:
    with pytest.raises(BadJobArgs) as caught:
        test_registry.resolve("ImportFromRouterJob", args)
    assert str(caught.value) == ("ImportFromRouterJob: argument import_type must be one of "
                                 "ip_pools, ppp_secrets, ppp_customers")


def test_send_notification_without_channel(test_registry: Registry) -> None:
    with pytest.raises(BadJobArgs, match="SendNotificationJob: argument channel must be one of "
                                         "sms, email"):
        test_registry.resolve("SendNotificationJob", {"channel": "fax"})


@pytest.mark.parametrize("planned, target", PLANNED_ALIASES.items())
def test_planned_aliases_resolve_to_their_target(test_registry: Registry, planned: str,
                                                 target: str) -> None:
    add(test_registry, target, queue="provisioning", needs_router=True)
    job_type, _, warning = test_registry.resolve(planned, {})
    assert job_type.name == target
    assert warning == f"{planned} is a legacy name; use {target}"


@pytest.mark.parametrize("name, args, target", [
    ("ProvisionSingleUserJob", {}, "router.provision_user"),
    ("BulkSyncUsersToRouterJob", {}, "router.sync_users"),
    ("SyncActiveSessionsJob", {}, "router.sync_sessions"),
    ("ImportFromRouterJob", {"import_type": "ppp_customers"}, "import.ppp_customers"),
    ("SendNotificationJob", {"channel": "email"}, "notify.email"),
])
def test_alias_of_a_type_that_is_not_registered_fails_clearly(
        test_registry: Registry, name: str, args: dict[str, Any], target: str) -> None:
    test_registry.types.pop(target, None)
    with pytest.raises(UnknownJobType) as caught:
        test_registry.resolve(name, args)
    assert str(caught.value) == f"{name} stands for {target}, which this version does not provide"


# -- configure(): [jobs."TYPE"] overrides -------------------------------------------------------


def test_configure_applies_every_override(test_registry: Registry,
                                          make_config: Callable[..., Config]) -> None:
    base = add(test_registry, "router.probe", queue="default", timeout=60, tries=1,
               needs_router=True, legacy=["ProbeJob"], params=(Param("x"),))
    config = make_config(jobs={"router.probe": {
        "queue": "provisioning", "timeout": 900, "tries": 5, "backoff": [1, 2, 3],
        "unique": ["x"], "router_lock": True, "priority": -3,
    }})
    configured = test_registry.configure(config)
    job_type = configured.get("router.probe")
    assert job_type.policy == Policy("provisioning", 900.0, 5, (1.0, 2.0, 3.0), ("x",), True, -3)
    # Everything but the policy is the base type's.
    assert (job_type.handler, job_type.params, job_type.legacy, job_type.needs_router) == (
        base.handler, base.params, base.legacy, base.needs_router)
    assert configured.resolve("ProbeJob")[0] is job_type
    # The base registry is unchanged.
    assert test_registry.get("router.probe") is base
    assert base.policy == Policy("default", 60.0, 1, (), True, False, 0)


def test_configure_changes_only_the_given_keys(test_registry: Registry,
                                               make_config: Callable[..., Config]) -> None:
    add(test_registry, "notify.probe", queue="notifications", timeout=120, tries=3,
        backoff=[60, 300, 900])
    configured = test_registry.configure(make_config(jobs={"notify.probe": {"tries": 6}}))
    assert configured.get("notify.probe").policy == Policy(
        "notifications", 120.0, 6, (60.0, 300.0, 900.0), True, False, 0)


def test_configure_unique_false_turns_keys_off(test_registry: Registry,
                                               make_config: Callable[..., Config]) -> None:
    add(test_registry, "system.probe")
    configured = test_registry.configure(make_config(jobs={"system.probe": {"unique": False}}))
    assert configured.get("system.probe").unique_key({"a": 1}, None) is None
    assert test_registry.get("system.probe").unique_key({"a": 1}, None) is not None


def test_configure_without_overrides_is_an_equal_copy(test_registry: Registry,
                                                      make_config: Callable[..., Config]) -> None:
    configured = test_registry.configure(make_config())
    assert configured is not test_registry
    assert configured.types == test_registry.types
    add(configured, "system.added_later")
    assert "system.added_later" not in test_registry.types
