"""router.health over a fleet: one router against 50, each its own simulated listener.

Every simulated router waits `--latency` seconds before each reply sentence, so one probe
(login, resource, identity: five replies) takes about five latencies. Probed side by side, 50
routers should cost a small multiple of one router, not fifty. Both sides run the real job
(ledger row, executor, middleware, data store) in the same process and the same run; rounds
alternate. Prints `name=value` lines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from loguru import logger

from ispqueue.config import DEFAULT_SCHEDULE, parse_config
from ispqueue.models import Job
from ispqueue.routeros.sim import RouterSim
from ispqueue.runtime import Runtime, initialise

USER, PASSWORD = "admin", "bench"


def timed_run(runtime: Runtime, router: str | None) -> float:
    started = time.perf_counter()
    job = runtime.enqueue("router.health", {}, router=router).job
    runtime.executor.run(job.id)
    took = time.perf_counter() - started
    job = Job.get_by_id(job.id)
    online = (job.result_dict or {}).get("counts", {}).get("online")
    if job.status != "succeeded" or online != (1 if router else len(runtime.config.routers)):
        raise SystemExit(f"router.health did not find every router online: {job.result}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routers", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    logger.remove()  # 50 "unknown → online" lines would bury the numbers

    sims = [RouterSim(username=USER, password=PASSWORD, identity=f"r-{i:02d}").start()
            for i in range(options.routers)]
    try:
        for sim in sims:
            sim.faults.latency = options.latency
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config({
                "ispqueue": {"data_dir": tmp},
                "logging": {"file": ""},
                "schedule": dict.fromkeys(DEFAULT_SCHEDULE, False),
                "routers": [{"name": f"r-{i:02d}", "host": "127.0.0.1", "port": sim.port,
                             "username": USER, "password": PASSWORD, "identity": f"r-{i:02d}"}
                            for i, sim in enumerate(sims)],
            }, Path(tmp) / "config.toml")
            initialise(config)
            runtime = Runtime(config)
            one, fleet = [], []
            for _ in range(options.rounds):
                one.append(timed_run(runtime, "r-00"))
                fleet.append(timed_run(runtime, None))
            runtime.db.close()
    finally:
        for sim in sims:
            sim.stop()
    one_s, fleet_s = statistics.median(one), statistics.median(fleet)
    print(f"routers={options.routers}")
    print(f"latency_per_reply_s={options.latency:g}")
    print(f"rounds={options.rounds}")
    print(f"one_router_s={one_s:.2f}")
    print(f"fleet_{options.routers}_s={fleet_s:.2f}")
    print(f"ratio={fleet_s / one_s:.2f}")


if __name__ == "__main__":
    main()
