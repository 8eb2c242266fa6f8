"""Replicas that follow the load: an autoscaled bee next to a fixed one, under the same
open-loop step load, and a bee scaled to zero called again.

Not a test: prints figures and draws them (matplotlib). A CPU-bound bee (about 5 ms
of CPU a call) behind one gateway; callers arrive at a fixed rate whatever the answers
(open loop, from another process): LOW req/s, then PEAK, then LOW again. Every request
is counted: answered, each error status, unanswered. Per second: offered and answered
rates, p50 and p99, replicas ready. The same load then runs against the same bee with
fixed replicas (its minimum), in turn, not at once: they would share the cores.

    python bench/bench_autoscale.py [--peak 400] [--png FILE] [--smoke]

PEAK defaults to what the machine's cores carry (400 req/s of 5 ms calls are 2 cores
of work, with nothing left for the gateway and the callers: 100 req/s per core here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bytewax_nb import Swarm

CALL_S = 0.005  # CPU seconds a call takes


# -- the callers: an open loop, in a process of its own ----------------------------------


async def _open_loop(url: str, phases: list[tuple[float, float]], timeout: float) -> list[list[Any]]:
    """POST at each phase's rate (req/s) for its seconds, whatever the answers; per request
    [sent offset s, status (0: unanswered), latency s]."""
    import aiohttp

    out: list[list[Any]] = []
    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            sent = time.perf_counter()
            try:
                async with session.post(
                    url, json={"n": n}, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            out.append([sent - start, status, time.perf_counter() - sent])

        tasks = []
        at, n = 0.0, 0
        for seconds, rate in phases:
            end = at + seconds
            while at < end:
                delay = start + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(n)))
                n += 1
                at += 1.0 / rate
            at = end
        await asyncio.gather(*tasks)
    return out


def _callers_main() -> None:
    url, phases, timeout = sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(_open_loop(url, phases, timeout))))


# -- one run ------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    requests: list[list[Any]] = field(default_factory=list)  # [sent, status, latency]
    replicas: list[tuple[float, int]] = field(default_factory=list)  # (s since start, ready)
    decisions: list[str] = field(default_factory=list)


def _work(p: Any) -> Any:
    end = time.process_time() + CALL_S
    while time.process_time() < end:
        pass
    return p


def run(name: str, phases: list[tuple[float, float]], timeout: float, **options: Any) -> Run:
    swarm = Swarm(f"bench-{name}", runtime="process", on_log=None)
    swarm.gateway("in", timeout=timeout, max_in_flight=100_000)
    swarm.bee(_work, input="in", name="work", **options)
    swarm.start()
    out = Run(name)
    try:
        swarm.request("in", 0)  # warm
        done = threading.Event()
        t0 = time.perf_counter()

        def sample() -> None:
            while not done.wait(0.5):
                bee = swarm.status(fresh=0.1)["bees"]["work"]
                out.replicas.append((time.perf_counter() - t0, int(bee["ready"])))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        callers = subprocess.run(
            [sys.executable, __file__, "--callers", swarm.url("in"), json.dumps(phases), str(timeout)],
            capture_output=True,
            text=True,
            check=True,
        )
        done.set()
        sampler.join()
        out.requests = json.loads(callers.stdout)
        out.decisions = [line for line in swarm.logs("work") if "autoscale:" in line]
    finally:
        swarm.stop(drain_timeout=5)
    return out


# -- figures ------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def per_second(r: Run, total: float) -> dict[str, list[float]]:
    seconds = math.ceil(total)
    sent, ok, p50, p99 = [0.0] * seconds, [0.0] * seconds, [math.nan] * seconds, [math.nan] * seconds
    by: list[list[float]] = [[] for _ in range(seconds)]
    for at, status, latency in r.requests:
        i = min(int(at), seconds - 1)
        sent[i] += 1
        if status == 200:
            ok[i] += 1
            by[i].append(latency * 1000)
    for i, lat in enumerate(by):
        p50[i], p99[i] = _pct(lat, 0.5), _pct(lat, 0.99)
    return {"sent": sent, "ok": ok, "p50": p50, "p99": p99}


def report(r: Run, phases: list[tuple[float, float]], idle_s: float | None) -> dict[str, float]:
    statuses: dict[int, int] = {}
    for _, status, _ in r.requests:
        statuses[status] = statuses.get(status, 0) + 1
    total = sum(s for s, _ in phases)
    secs = per_second(r, total)
    low_s, peak_s = phases[0][0], phases[1][0]
    steady = statistics.median(v for v in secs["p99"][1 : int(low_s)] if not math.isnan(v))
    recovered = next(
        (i - low_s for i in range(int(low_s), int(low_s + peak_s)) if secs["p99"][i] < 3 * steady
         and all(secs["p99"][j] < 3 * steady for j in range(i, min(i + 3, int(low_s + peak_s))))),
        math.inf,
    )  # fmt: skip
    answered = statuses.get(200, 0)
    failed = len(r.requests) - answered
    shown = ", ".join(f"{k if k else 'unanswered'}: {v}" for k, v in sorted(statuses.items()))
    print(f"  {r.name}: {len(r.requests)} requests ({shown})")
    print(f"    steady p99 {steady:.1f} ms; after the step p99 under 3x steady again after {recovered:.1f} s")
    peak = [lat * 1000 for at, st, lat in r.requests if st == 200 and low_s <= at < low_s + peak_s]
    print(f"    during the peak: p50 {_pct(peak, 0.5):.1f} ms, p99 {_pct(peak, 0.99):.1f} ms")
    most = max((n for _, n in r.replicas), default=0)
    back = math.inf
    if idle_s is not None:
        drop = low_s + peak_s
        first = min((n for _, n in r.replicas), default=0)
        back = next((t - drop for t, n in r.replicas if t > drop and n == first), math.inf)
        print(f"    replicas: up to {most}; back to {first} {back:.1f} s after the load dropped", end="")
        print(f" (idle_s {idle_s:g})")
    for line in r.decisions:
        print(f"    | {line.split('autoscale: ', 1)[1]}")
    return {"failed": failed, "recovered_s": recovered, "back_s": back}


def draw(runs: list[Run], phases: list[tuple[float, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = sum(s for s, _ in phases)
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    colors = {"autoscaled": "#0969da", "fixed": "#bf8700"}
    offered = []
    for seconds, rate in phases:
        offered += [rate] * int(seconds)
    axes[0].step(range(len(offered)), offered, where="post", color="#888", label="offered")
    for r in runs:
        secs = per_second(r, total)
        color = colors.get(r.name, "#555")
        axes[0].step(
            range(len(secs["ok"])), secs["ok"], where="post", color=color, label=f"answered, {r.name}"
        )
        axes[1].plot(secs["p99"], color=color, label=f"p99, {r.name}")
        axes[1].plot(secs["p50"], color=color, linestyle=":", label=f"p50, {r.name}")
        axes[2].step(
            [t for t, _ in r.replicas], [n for _, n in r.replicas], where="post", color=color, label=r.name
        )
    axes[0].set_ylabel("req/s")
    axes[1].set_ylabel("ms")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("replicas ready")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"A 5 ms CPU-bound bee under an open-loop step load ({os.cpu_count()} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"  drawn: {path}")


def cold_start(idle_s: float) -> None:
    """A bee scaled to zero, called again: the first answer's time."""
    swarm = Swarm("bench-zero", runtime="process", on_log=None)
    swarm.gateway("in", timeout=30)
    swarm.bee(_work, input="in", name="work", min_replicas=0, max_replicas=1, idle_s=idle_s)
    swarm.start()
    try:
        swarm.request("in", 0)
        deadline = time.monotonic() + idle_s + 30
        while swarm.status()["bees"]["work"]["replicas"] and time.monotonic() < deadline:
            time.sleep(0.1)  # the bee's autoscaler stops it once idle: polled, not awaited
        t = time.perf_counter()
        swarm.request("in", 1)
        first = time.perf_counter() - t
        measured = None
        while measured is None and time.monotonic() < deadline:
            measured = swarm.status()["bees"]["work"]["autoscale"]["cold_start_s"]
            time.sleep(0.05)  # the autoscaler writes it down at its next look
        print(f"  scaled to zero and called: first answer in {first * 1000:.0f} ms", end="")
        print(f" (cold start, from the decision to a replica serving: {measured} s)")
    finally:
        swarm.stop(drain_timeout=5)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--callers":
        _callers_main()
        return
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--low", type=float, default=20.0, help="req/s before and after the step")
    parser.add_argument(
        "--peak", type=float, default=400.0 if cores >= 4 else 100.0 * cores, help="req/s of the step"
    )
    parser.add_argument("--idle-s", type=float, default=10.0, help="the autoscaled bee's idle_s")
    parser.add_argument("--png", default="/tmp/bytewax-nb-autoscale.png", help="where to draw the figures")
    parser.add_argument("--smoke", action="store_true", help="a few seconds each, to see it runs")
    args = parser.parse_args()
    if args.smoke:
        phases = [(3.0, args.low), (4.0, min(args.peak, 100.0)), (5.0, args.low)]
        idle_s = 1.0
    else:
        phases = [(15.0, args.low), (30.0, args.peak), (args.idle_s + 25.0, args.low)]
        idle_s = args.idle_s
    print(
        f"open loop: {' -> '.join(f'{r:g} req/s for {s:g} s' for s, r in phases)}; a {CALL_S * 1000:g} ms bee"
    )
    most = max(2, cores)
    auto = run("autoscaled", phases, 30.0, min_replicas=1, max_replicas=most, idle_s=idle_s)
    fixed = run("fixed", phases, 30.0, replicas=1)
    figures = report(auto, phases, idle_s)
    report(fixed, phases, None)
    draw([auto, fixed], phases, args.png)
    cold_start(1.0 if args.smoke else 5.0)
    if figures["failed"]:
        print(f"  the autoscaled swarm failed {figures['failed']:.0f} requests", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
