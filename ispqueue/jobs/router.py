"""Router jobs. A handler picks its routers and arguments and hands them, with its context
(deadline, cancel hook, log), to a service: the logic lives in ispqueue.services and the
router I/O in ispqueue.routeros."""

from __future__ import annotations

from typing import Any

from ispqueue.context import JobContext
from ispqueue.registry import Param, registry
from ispqueue.services import fleet


@registry.register(
    "router.health", queue="default", timeout=60, tries=1, legacy=("CheckRouterHealth",),
    router_optional=True,
    params=(
        Param("max_latency_ms", "float", default=1000.0, minimum=0,
              help="warning above this API round trip (ms)"),
        Param("max_cpu_load", "float", default=90.0, minimum=0, maximum=100,
              help="warning above this CPU load (%)"),
        Param("max_memory_percent", "float", default=90.0, minimum=0, maximum=100,
              help="warning above this memory use (%)"),
    ),
)
def health(ctx: JobContext) -> dict[str, Any]:
    """Login + resource/identity probe → online / warning / offline (one router, or all)."""
    return fleet.check_routers(ctx.routers(), fleet.Thresholds(**ctx.args), ctx)
