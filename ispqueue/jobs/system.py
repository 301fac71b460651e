"""The daemon's own job types."""

from __future__ import annotations

import time
from typing import Any

from ispqueue.config import QUEUES
from ispqueue.context import JobContext
from ispqueue.registry import Param, registry


@registry.register(
    "system.canary", queue="default", timeout=60, tries=1, unique=False,
    fan_out="queues", queue_arg="queue",
    params=(
        Param("queue", choices=QUEUES, default="default", help="the queue to prove"),
        Param("hold_seconds", "float", default=0.0, minimum=0, maximum=60,
              help="simulated work, for capacity tests"),
    ),
)
def canary(ctx: JobContext) -> dict[str, Any]:
    """Dead-man's switch: proves a queue runs jobs end to end."""
    hold = ctx.args.get("hold_seconds", 0.0)
    until = time.monotonic() + hold
    while (left := until - time.monotonic()) > 0:
        # Waiting on the context's event keeps a held canary instantly interruptible.
        ctx.wake.wait(min(left, 1.0))
        ctx.check()
    return {"queue": ctx.queue, "held_seconds": hold}
