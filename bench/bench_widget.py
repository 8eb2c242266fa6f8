"""The Swarm widget under load: what its refreshes cost the owner, and what they send.

Not a test: prints figures. A 3-bee fused chain serves a closed loop of wrk callers
(several thousand requests a second here) while the widget refreshes as it does under a
cell; a bee is selected, so its panel's detail (logs, errors, replicas, last minutes)
is refreshed too. Measured over the run: the CPU seconds of the widget's refresh
thread (the owner's cost), the state messages a second it sends to the front-end and
their bytes; the same with no load beside it.

    python bench/bench_widget.py [--seconds 10] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from bytewax_nb import Swarm, SwarmWidget


def _thread_cpu(native_id: int) -> float:
    for t in psutil.Process().threads():
        if t.id == native_id:
            return float(t.user_time + t.system_time)
    raise RuntimeError("the widget's thread is gone")


def _counting(widget: SwarmWidget) -> dict[str, int]:
    """Count what the widget sends its front-end (its comm's messages and their bytes)."""
    sent = {"messages": 0, "bytes": 0}
    plain = widget._send

    def send(msg: dict[str, Any], buffers: Any = None) -> None:
        sent["messages"] += 1
        sent["bytes"] += len(repr(msg))  # JSON-sized: the state is plain data
        plain(msg, buffers)

    widget._send = send
    return sent


def _wrk(url: str, seconds: float, folder: str) -> subprocess.Popen[str]:
    script = os.path.join(folder, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = \'{"n": 1}\'\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
    cmd = ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", "-s", script, url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def measure(seconds: float, load: bool) -> dict[str, float]:
    swarm = Swarm("bench-widget", runtime="process", on_log=None)
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="a")
    swarm.bee(lambda p: p, input="a", name="b")
    swarm.bee(lambda p: p, input="b", name="c")
    with swarm:
        widget = SwarmWidget.of(swarm)
        widget.selected = "c"  # a clicked bee: its panel refreshes too
        sent = _counting(widget)
        folder = tempfile.mkdtemp()
        cpu0, t0, sent0 = _thread_cpu(widget._poller.native_id), time.monotonic(), dict(sent)
        wrk = _wrk(swarm.url("in"), seconds, folder) if load else None
        if wrk is not None:
            out = wrk.communicate()[0]
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        else:
            time.sleep(seconds)  # the measurement's span, not a wait for readiness
            rps = 0.0
        span = time.monotonic() - t0
        cpu = _thread_cpu(widget._poller.native_id) - cpu0
        widget.close()
        shutil.rmtree(folder)
    return {
        "rps": rps,
        "cpu_pct": 100 * cpu / span,
        "msgs": (sent["messages"] - sent0["messages"]) / span,
        "kb": (sent["bytes"] - sent0["bytes"]) / span / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="a short run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")
    seconds = 2.0 if args.smoke else args.seconds
    print(f"{'load':<22} {'req/s':>8} {'widget CPU %':>13} {'msgs/s':>7} {'KB/s':>6}")
    for load in (False, True):
        r = measure(seconds, load)
        name = "wrk, 8 callers" if load else "idle"
        print(f"{name:<22} {r['rps']:8.0f} {r['cpu_pct']:13.2f} {r['msgs']:7.2f} {r['kb']:6.1f}")


if __name__ == "__main__":
    main()
