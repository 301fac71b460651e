"""Rows per second of a 50k-secret `print`: raw librouteros against RouterClient.

The baseline is librouteros's own `Api` (its value casting included) on the same simulator in
the same run; rounds alternate so drift hits both sides alike. Prints `name=value` lines.
"""

from __future__ import annotations

import argparse
import statistics
import time

import librouteros

from ispqueue.config import RouterConfig
from ispqueue.routeros.client import RouterClient
from ispqueue.routeros.sim import RouterSim

USER, PASSWORD = "admin", "bench"


def raw_read(port: int) -> int:
    api = librouteros.connect("127.0.0.1", USER, PASSWORD, port=port, encoding="utf-8")
    try:
        return len(list(api("/ppp/secret/print")))
    finally:
        api.close()


def client_read(port: int) -> int:
    config = RouterConfig(name="bench", host="127.0.0.1", port=port, username=USER,
                          password=PASSWORD, timeout=60.0)
    with RouterClient.connect(config) as client:
        return len(client.print("/ppp/secret"))


def rows_per_second(read, port: int) -> float:
    started = time.perf_counter()
    rows = read(port)
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secrets", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    with RouterSim(host="127.0.0.1", port=0, username=USER, password=PASSWORD,
                   secrets=options.secrets, seed=1) as sim:
        raw_read(sim.port)  # warm the simulator's caches before timing either side
        raw, ours = [], []
        for _ in range(options.rounds):
            raw.append(rows_per_second(raw_read, sim.port))
            ours.append(rows_per_second(client_read, sim.port))
    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    print(f"rows={options.secrets}")
    print(f"rounds={options.rounds}")
    print(f"raw_rows_per_s={raw_median:.0f}")
    print(f"client_rows_per_s={ours_median:.0f}")
    print(f"ratio={ours_median / raw_median:.2f}")


if __name__ == "__main__":
    main()
