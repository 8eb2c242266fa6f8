"""Gateway throughput and latency: a raw aiohttp echo server vs swarms of 1 and 3 bees,
each bee in its own processes, then the 3-bee chain fused into one process per replica
(the default), and unfused once more with the bus's encryption off.

Not a test: prints figures. The same closed-loop load (wrk, a C load generator) at
concurrency 1 and 32 drives each server in one run, so the ratios compare like
with like on this machine.

    python bench/bench_gateway.py            # 5 s per case
    python bench/bench_gateway.py --smoke    # 1 s per case (CI: keeps it from rotting)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

from loadgen import free_port, wait_port, wrk

from bytewax_nb import Swarm
from bytewax_nb.model.settings import ENCRYPT

_ECHO = textwrap.dedent(
    """
    import sys, uvloop
    from aiohttp import web
    async def echo(request):
        body = await request.read()
        return web.Response(body=body, content_type="application/json")
    app = web.Application()
    app.router.add_post("/gateways/echo", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=uvloop.new_event_loop())
    """
)
_LUA = (
    'wrk.method = "POST"\n'
    'wrk.body = \'{"name": "Bee", "x": 1}\'\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
)


@dataclass
class Result:
    case: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _chain(n: int, fuse: bool = False, traced: bool = False) -> Swarm:
    """A chain of `n` bees behind gateway "in"; `traced`: a second gateway, "traced",
    with tracing on, into the same bees (the same processes serve both)."""
    swarm = Swarm(f"bench{n}", runtime="process", on_log=None, fuse=fuse)
    swarm.gateway("in")
    src: str | list[str] = "in"
    if traced:
        swarm.gateway("traced", tracing=True)
        src = ["in", "traced"]
    for i in range(n):
        last = i == n - 1
        swarm.bee(lambda p: p, input=src, name=f"b{i}") if not last else swarm.bee(
            lambda p, ctx: ctx.respond(p), input=src, name=f"b{i}"
        )
        src = f"b{i}"
    return swarm


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="1 s per case")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")
    tmp = tempfile.mkdtemp()
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write(_LUA)
    results: list[Result] = []

    def run(case: str, url: str) -> None:
        wrk(url, 8, min(1.0, seconds), script)  # warm-up
        for c in (1, 32):
            rps, p50, p99, errors = wrk(url, c, seconds, script)
            results.append(Result(case, c, rps, p50, p99, errors))

    port = free_port()
    echo = subprocess.Popen([sys.executable, "-c", _ECHO, str(port)])
    try:
        wait_port(port)
        run("echo", f"http://127.0.0.1:{port}/gateways/echo")
    finally:
        echo.terminate()
        echo.wait()
    for n in (1, 3):
        with _chain(n) as swarm:
            run(f"swarm-{n}bee", swarm.url("in"))
    # the same chain fused (the default): one process per replica, bees called in turn
    with _chain(3, fuse=True) as swarm:
        run("3bee-fused", swarm.url("in"))
    # tracing on: every request's hops recorded, the slowest and failed kept (no
    # exporter); against the same bees untraced, in turn, three times (medians compared)
    for fuse, case in ((True, "fused"), (False, "unfused")):
        with _chain(3, fuse=fuse, traced=True) as swarm:
            for _ in range(3):
                run(f"{case}-off", swarm.url("in"))
                run(f"{case}-traced", swarm.url("traced"))
    # the same 3-bee chain with the bus's CurveZMQ encryption off: what encryption costs
    os.environ[ENCRYPT.name] = "0"
    try:
        with _chain(3) as swarm:
            run("3bee-plain", swarm.url("in"))
    finally:
        del os.environ[ENCRYPT.name]

    print(f"{'case':<12}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for r in results:
        print(f"{r.case:<12}{r.concurrency:>5}{r.rps:>10.0f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}{r.errors:>9}")
    by = {(r.case, r.concurrency): r for r in results}
    echo32, echo1 = by[("echo", 32)], by[("echo", 1)]
    for case in ("swarm-1bee", "swarm-3bee", "3bee-fused"):
        s32, s1 = by[(case, 32)], by[(case, 1)]
        print(
            f"{case} / echo: req/s at c=32 {s32.rps / echo32.rps:.0%}, "
            f"p50 at c=1 +{s1.p50_ms - echo1.p50_ms:.3f} ms"
        )

    def median(case: str, c: int, figure: str) -> float:
        return statistics.median(getattr(r, figure) for r in results if (r.case, r.concurrency) == (case, c))

    for case in ("fused", "unfused"):
        on32, off32 = median(f"{case}-traced", 32, "rps"), median(f"{case}-off", 32, "rps")
        on1, off1 = median(f"{case}-traced", 1, "p50_ms"), median(f"{case}-off", 1, "p50_ms")
        print(
            f"tracing on the {case} 3-bee chain (medians of 3): req/s at c=32 {on32 / off32 - 1:+.1%}, "
            f"p50 at c=1 {on1 - off1:+.3f} ms"
        )
    plain32, plain1 = by[("3bee-plain", 32)], by[("3bee-plain", 1)]
    enc32, enc1 = by[("swarm-3bee", 32)], by[("swarm-3bee", 1)]
    print(
        f"encryption on the 3-bee chain: req/s at c=32 {enc32.rps / plain32.rps - 1:+.0%}, "
        f"p50 at c=1 {enc1.p50_ms - plain1.p50_ms:+.3f} ms"
    )
    if any(r.errors for r in results if r.case != "echo"):
        sys.exit("some swarm requests failed")


if __name__ == "__main__":
    main()
