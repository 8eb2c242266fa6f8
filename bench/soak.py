"""Soak: a fixed-rate load through a 3-bee swarm while things go wrong on a schedule.

Not a test: prints figures, and exits non-zero when a request went unanswered or
failed outside the bad requests it sent on purpose. A load process sends requests at
a fixed rate (open loop: a slow swarm does not slow the load) through
`pre -> model (1-2 replicas) -> post`, while this process, every `--every` seconds,
- kills a replica with SIGKILL (a process, or a container on the docker runtime),
- redeploys `post` (every second time) and scales `model` between 1 and 2 (every
  third): with one replica the three bees are a fused chain, one process, with two
  they are apart, so each scale regroups the swarm under load, and
- sends one bad request of each kind: invalid JSON, JSON nested too deeply, a wrong
  method, an unknown gateway, a body over the limit, a bee raising BadRequest, a bee
  raising an error, a response holding NaN. Each must get its own clear status.

    python bench/soak.py --minutes 10                  # process runtime, 300 req/s
    BYTEWAX_NB_BASE_IMAGE=... python bench/soak.py --runtime docker --minutes 2
    python bench/soak.py --smoke                       # 20 s, an event every 4 s (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from bytewax_nb import BadRequest, Swarm

_MAX_BODY = 64 * 1024


def _load(url: str, rate: float, seconds: float, out: str) -> None:
    """The load process: `rate` requests a second for `seconds`, every outcome written to `out`."""
    import aiohttp

    # (sent at, status or 0 = unanswered, seconds, the answer is this request's)
    outcomes: list[tuple[float, int, float, bool]] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        t = time.perf_counter()
        status, raw = 0, b""
        try:
            async with session.post(url, json={"x": i}) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            pass  # unanswered: status 0
        outcomes.append((t, status, time.perf_counter() - t, status == 200 and _answers(raw, i)))

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=2000)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks = []
            for i in range(int(rate * seconds)):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(session, i)))
            await asyncio.gather(*tasks)

    asyncio.run(main())
    with open(out, "w") as f:
        json.dump(outcomes, f)


def _answers(raw: bytes, i: int) -> bool:
    """Whether a 200's body is the answer to request `i`: the chain answers
    {"y": payload, "v": the version of its `post` bee}."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("y") == {"x": i} and str(body.get("v", "")).startswith("v")


def _swarm(runtime: str) -> Swarm:
    swarm = Swarm("soak", runtime=runtime, on_log=None)
    swarm.gateway("in", timeout=10, max_body=_MAX_BODY)

    @swarm.bee(input="in")
    def pre(payload: Any) -> Any:
        return payload

    @swarm.bee(input="pre")
    def model(payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("bad"):
            raise BadRequest("bad is not allowed")
        if isinstance(payload, dict) and payload.get("boom"):
            raise RuntimeError("boom")
        return payload

    swarm.bee(_post("v0"), input="model", name="post")
    return swarm


def _post(version: str) -> Any:
    def post(payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("nan"):
            return {"y": float("nan")}
        return {"y": payload, "v": version}

    return post


def _raw(url: str, data: bytes | None, method: str = "POST") -> int:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _bad_requests(url: str) -> list[tuple[str, int, int]]:
    """One bad request of each kind: (what, expected status, status got)."""
    base = url.rsplit("/gateways/", 1)[0]
    cases = [
        ("invalid JSON", 400, lambda: _raw(url, b"{nope")),
        ("JSON nested too deeply", 400, lambda: _raw(url, b"[" * 30_000 + b"]" * 30_000)),
        ("wrong method", 405, lambda: _raw(url, None, "GET")),
        ("unknown gateway", 404, lambda: _raw(base + "/gateways/nosuch", b"1")),
        ("body over the limit", 413, lambda: _raw(url, b'"' + b"x" * (_MAX_BODY + 10) + b'"')),
        ("bee raises BadRequest", 400, lambda: _raw(url, b'{"bad": true}')),
        ("bee raises", 500, lambda: _raw(url, b'{"boom": true}')),
        ("response holds NaN", 500, lambda: _raw(url, b'{"nan": true}')),
    ]
    return [(what, want, send()) for what, want, send in cases]


def _kill_one(swarm: Swarm, bee: str, runtime: str) -> None:
    if runtime == "docker":
        group = swarm.status(fresh=0)["bees"][bee]["group"]
        bee = group[0] if group else bee  # a fused chain's containers bear its first bee's name
        import docker

        client = docker.from_env()
        found = client.containers.list(
            filters={"label": [f"bytewax-nb.swarm={swarm.name}", f"bytewax-nb.bee={bee}"]}
        )
        if found:
            found[0].kill(signal="SIGKILL")
        client.close()
        return
    pids = [
        r["pid"] for r in swarm.status(fresh=0)["bees"][bee]["replicas"] if r["pid"] and r["state"] == "up"
    ]
    if pids:
        os.kill(pids[0], signal.SIGKILL)


def _chaos(swarm: Swarm, runtime: str, every: float, until: float, log: list[str], bad: list[Any]) -> None:
    """On a schedule until `until`: kill, redeploy, scale, and send bad requests."""
    url = swarm.url("in")
    t0 = time.monotonic()
    n = 0
    version = 0
    replicas = 1
    next_at = time.monotonic() + every
    while time.monotonic() + every / 2 < until:
        time.sleep(max(0.0, next_at - time.monotonic()))  # a schedule, not a wait for readiness
        next_at += every
        n += 1
        bee = ("pre", "model", "post")[n % 3]
        _kill_one(swarm, bee, runtime)
        log.append(f"{time.monotonic() - t0:6.1f} s killed a replica of {bee}")
        bad.extend(_bad_requests(url))
        try:
            if n % 2 == 0:
                version += 1
                swarm.bee(_post(f"v{version}"), input="model", name="post")
                log.append(f"{time.monotonic() - t0:6.1f} s redeployed post (v{version})")
            if n % 3 == 0:
                replicas = 2 if replicas == 1 else 1
                swarm.scale("model", replicas)
                log.append(f"{time.monotonic() - t0:6.1f} s scaled model to {replicas}")
        except Exception as exc:  # noqa: BLE001 - a change that failed is a finding, reported
            log.append(f"{time.monotonic() - t0:6.1f} s CHANGE FAILED: {type(exc).__name__}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    parser.add_argument("--every", type=float, default=60.0, help="seconds between two disturbances")
    parser.add_argument("--smoke", action="store_true", help="20 s, a disturbance every 4 s")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)  # url rate seconds out: the load process
    args = parser.parse_args()
    if args.load:
        _load(args.load[0], float(args.load[1]), float(args.load[2]), args.load[3])
        return
    seconds, every = (20.0, 4.0) if args.smoke else (args.minutes * 60, args.every)

    swarm = _swarm(args.runtime).start()
    url = swarm.url("in")
    out = os.path.join(tempfile.mkdtemp(), "outcomes.json")
    log: list[str] = []
    bad: list[tuple[str, int, int]] = []
    t0 = time.monotonic()
    load = subprocess.Popen([sys.executable, __file__, "--load", url, str(args.rate), str(seconds), out])
    chaos = threading.Thread(target=_chaos, args=(swarm, args.runtime, every, t0 + seconds, log, bad))
    chaos.start()
    load.wait()
    chaos.join()
    status = swarm.status()
    swarm.stop()
    with open(out) as f:
        outcomes = json.load(f)

    codes = Counter(code for _, code, _, _ in outcomes)
    ok = sorted(s for _, code, s, _ in outcomes if 200 <= code < 300)
    wrong_body = sum(1 for _, code, _, right in outcomes if code == 200 and not right)
    failed = sum(n for code, n in codes.items() if not 200 <= code < 300)
    bees = status["bees"]
    deaths = sum(b.get("deaths", 0) for b in bees.values())
    retried = sum(b.get("retried", 0) for b in bees.values())
    dropped = Counter()
    for b in bees.values():
        dropped.update(b.get("dropped_by", {}))
    dropped.update(status.get("hub", {}).get("dropped_by", {}))
    wrong = [(what, want, got) for what, want, got in bad if want != got]

    head = f"soak: {args.runtime} runtime, {seconds:.0f} s at {args.rate:g} req/s"
    print(f"{head}, a disturbance every {every:g} s")
    for line in log:
        print(f"  {line}")
    print(f"{'requests sent':<28}{len(outcomes):>10}")
    print(f"{'answered 2xx':<28}{len(ok):>10}")
    print(f"{'  of them, a wrong answer':<28}{wrong_body:>10}  (checked against the request)")
    for code in sorted(c for c in codes if c and not 200 <= c < 300):
        print(f"{'answered ' + str(code):<28}{codes[code]:>10}")
    print(f"{'unanswered':<28}{codes.get(0, 0):>10}")
    if ok:
        p50 = statistics.median(ok) * 1000
        p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] * 1000
        print(f"{'p50 / p99 ms (2xx)':<28}{p50:>10.2f} / {p99:.2f}")
    print(f"{'replicas killed (SIGKILL)':<28}{sum('killed a replica' in line for line in log):>10}")
    # a fused chain's process counts its death for each of its bees
    print(f"{'deaths, summed per bee':<28}{deaths:>10}")
    print(f"{'messages sent again':<28}{retried:>10}")
    print(f"{'hub restarts':<28}{status.get('hub', {}).get('restarts', 0):>10}")
    # "unreachable": sent to a replica in the instant between its death and the news of it
    # (those messages are sent again); any other reason would be a finding
    print(f"{'frames dropped':<28}{sum(dropped.values()):>10}  {dict(dropped) or ''}")
    print(f"{'bad requests sent':<28}{len(bad):>10}  ({len(bad) - len(wrong)} answered as expected)")
    for what, want, got in wrong:
        print(f"  bad request '{what}': expected {want}, got {got}")
    if failed or wrong_body or wrong or any("FAILED" in line for line in log):
        sys.exit(
            f"soak failed: {failed} load requests not answered 2xx, {wrong_body} answered wrongly, "
            f"{len(wrong)} bad requests mis-answered"
        )


if __name__ == "__main__":
    main()
