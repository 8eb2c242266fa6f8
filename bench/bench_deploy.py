"""A swarm deployed as a stack on Docker Swarm mode, against the same swarm in processes.

Not a test: prints figures. Needs the engine in Swarm mode (scripts/swarm-init.sh).
- deploy time: a new stack from cached images (the images are built by a first,
  untimed deploy), and an unchanged redeploy;
- requests/s and p50 of a 3-bee chain (gateway -> a -> b -> c) over a closed loop of 8
  callers, on the stack and on the process runtime in the same run (one process per
  bee on both: no fusion);
- seconds from `scale` (the engine's `docker service scale`) to the new replica serving.

    BYTEWAX_NB_BASE_IMAGE=... python bench/bench_deploy.py [--seconds 5] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time

from bytewax_nb import Swarm
from bytewax_nb.client import post
from bytewax_nb.stack.attach import StackLink

STACK = "bench-chain"


def chain(runtime: str) -> Swarm:
    swarm = Swarm("bench-chain", runtime=runtime, on_log=None, fuse=False)
    swarm.gateway("in")
    swarm.bee(lambda p: p + 1, input="in", name="a")
    swarm.bee(lambda p: p * 2, input="a", name="b")
    swarm.bee(lambda p: p - 1, input="b", name="c")
    return swarm


def load(url: str, seconds: float, callers: int = 8) -> tuple[float, float, int]:
    """(requests/s, p50 ms, errors) of a closed loop of `callers`."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop:
            s = time.perf_counter()
            status, body, _ = post(url, 20)
            if status != 200 or body != 41:
                errors[0] += 1
            latencies.append(time.perf_counter() - s)

    threads = [threading.Thread(target=loop) for _ in range(callers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(latencies) / seconds, statistics.median(latencies) * 1000, errors[0]


def undeploy() -> None:
    subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", STACK], capture_output=True)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="1 s of load per runtime")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    swarm = chain("docker")
    try:
        swarm.deploy(STACK)  # builds (or finds) the images; not timed
        undeploy()
        t = time.perf_counter()
        deployment = swarm.deploy(STACK)
        fresh = time.perf_counter() - t
        t = time.perf_counter()
        swarm.deploy(STACK)
        again = time.perf_counter() - t
        print(f"deploy, cached images: new stack {fresh:.1f} s, unchanged redeploy {again:.1f} s")
        url = deployment.urls["in"]
        stack_rate, stack_p50, stack_errors = load(url, seconds)
        link = StackLink(STACK)
        t = time.perf_counter()
        link.scale("b", 2, timeout=120)
        scaled = time.perf_counter() - t
    finally:
        undeploy()
    local = chain("process")
    local.start()
    try:
        local_rate, local_p50, local_errors = load(local.url("in"), seconds)
    finally:
        local.stop()
    print(f"{'3-bee chain, 8 callers':<24}{'req/s':>9}{'p50 ms':>9}{'errors':>8}")
    print(f"{'stack (Swarm mode)':<24}{stack_rate:>9.0f}{stack_p50:>9.2f}{stack_errors:>8}")
    print(f"{'process runtime':<24}{local_rate:>9.0f}{local_p50:>9.2f}{local_errors:>8}")
    print(f"scale b 1 -> 2 until the new replica serves: {scaled:.1f} s")


if __name__ == "__main__":
    main()
