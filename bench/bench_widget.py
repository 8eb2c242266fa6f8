"""The Swarm widget under load: what its refreshes cost the owner, and what they send.

Not a test: prints figures. A 3-bee fused chain serves a closed loop of wrk callers
(several thousand requests a second here), with and without a widget refreshing as it
does under a cell (a bee selected, so its panel's detail is refreshed too), and idle.
Measured over each run: the owner process's CPU (the kernel's side: supervisor and
widget; the widget's cost is the difference), and the state messages a second the
widget sends its front-end and their size. Then the browser's side: a real JupyterLab
page drawing the widget, its frame times idle and under about 2,000 req/s (one wrk
caller), with a Playwright trace of that span (`widget_frames.py`).

    python bench/bench_widget.py [--seconds 10] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from typing import Any

import psutil
from loadgen import post_script, wrk
from widget_frames import frame_times

from bytewax_nb import Swarm, SwarmWidget


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


def measure(seconds: float, load: bool, with_widget: bool) -> dict[str, float]:
    swarm = Swarm("bench-widget", runtime="process", on_log=None)
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="a")
    swarm.bee(lambda p: p, input="a", name="b")
    swarm.bee(lambda p: p, input="b", name="c")
    owner = psutil.Process()
    with swarm:
        widget = SwarmWidget.of(swarm) if with_widget else None
        sent = {"messages": 0, "bytes": 0}
        if widget is not None:
            widget.selected = "c"  # a clicked bee: its panel refreshes too
            sent = _counting(widget)
        folder = tempfile.mkdtemp()
        cpu0, t0 = sum(owner.cpu_times()[:2]), time.monotonic()
        if load:
            rps = wrk(swarm.url("in"), 8, seconds, post_script(folder, '{"n": 1}'))[0]
        else:
            time.sleep(seconds)  # the measurement's span, not a wait for readiness
            rps = 0.0
        span = time.monotonic() - t0
        cpu = sum(owner.cpu_times()[:2]) - cpu0
        if widget is not None:
            widget.close()
        shutil.rmtree(folder)
    return {
        "rps": rps,
        "cpu_pct": 100 * cpu / span,
        "msgs": sent["messages"] / span,
        "kb": sent["bytes"] / span / 1024,
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
    print(f"{'run':<28} {'req/s':>8} {'owner CPU %':>12} {'msgs/s':>7} {'KB/s':>6}")
    for name, load, with_widget in (
        ("idle, widget", False, True),
        ("wrk 8 callers, no widget", True, False),
        ("wrk 8 callers, widget", True, True),
    ):
        r = measure(seconds, load, with_widget)
        print(f"{name:<28} {r['rps']:8.0f} {r['cpu_pct']:12.2f} {r['msgs']:7.2f} {r['kb']:6.1f}")
    frames = frame_times(seconds, callers=1)
    if isinstance(frames, str):
        print(f"browser frame times: not measured ({frames})")
        return
    print(f"\nJupyterLab page, widget shown ({frames['rps']:.0f} req/s under load)")
    print(f"{'run':<8} {'frames':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'>50 ms':>7}")
    for name in ("idle", "load"):
        f = frames[name]
        figures = f"{f['frames']:7d} {f['p50_ms']:7.1f} {f['p99_ms']:7.1f} {f['max_ms']:7.1f} {f['long']:7d}"
        print(f"{name:<8} {figures}")
    print(f"Playwright trace of the loaded span: {frames['trace']} (playwright show-trace FILE)")


if __name__ == "__main__":
    main()
