"""Start-up and steady state of one bee: process runtime vs docker runtime (cached image).

Not a test: prints figures. For each runtime: seconds from `swarm.start()` to the first
answered request, then requests/s and p50 over a closed loop of 8 callers (Python
threads over HTTP keep-alive-less urllib, the same for both runtimes).

    BYTEWAX_NB_BASE_IMAGE=... python bench/bench_runtimes.py [--seconds 5] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from bytewax_nb import Swarm
from bytewax_nb.client import post


def measure(runtime: str, seconds: float) -> tuple[float, float, float]:
    swarm = Swarm(f"bench-{runtime}", runtime=runtime, on_log=None)
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="echo")
    warm = Swarm(f"bench-{runtime}-warm", runtime=runtime, on_log=None)  # builds the image, if any
    warm.gateway("in")
    warm.bee(lambda p: p, input="in", name="echo")
    warm.start()
    warm.stop()
    t = time.perf_counter()
    swarm.start()
    swarm.request("in", 0)
    first = time.perf_counter() - t
    url = swarm.url()
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop:
            s = time.perf_counter()
            post(url, 1)
            latencies.append(time.perf_counter() - s)

    threads = [threading.Thread(target=loop) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    swarm.stop()
    return first, len(latencies) / seconds, statistics.median(latencies) * 1000


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="1 s of load per runtime")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    print(f"{'runtime':<9}{'start->first answer s':>23}{'req/s (8 callers)':>19}{'p50 ms':>9}")
    for runtime in ("process", "docker"):
        first, rate, p50 = measure(runtime, seconds)
        print(f"{runtime:<9}{first:>23.3f}{rate:>19.0f}{p50:>9.2f}")


if __name__ == "__main__":
    main()
