"""Streams, the Open Inference Protocol and the HTTP core, each against its yardstick
measured in the same run on this machine.

- stream: time to the first chunk of a streamed answer against a plain answer of a bee
  doing the same work (c=1), and chunks per second at c=1 and c=32;
- OIP v2: infer of a 1x4 float32 tensor (JSON) against the plain JSON route of the same
  bee (wrk, c=1 and c=32); a 1 MB binary tensor in and out against raw pyzmq carrying
  the same bytes both ways between two processes;
- HTTP core: an aiohttp echo and a Granian (RSGI) echo at c=1 and c=32, beside the
  gateway itself (aiohttp).

Not a test: prints figures.

    python bench/bench_protocols.py            # 5 s per case
    python bench/bench_protocols.py --smoke    # short runs (CI: keeps it from rotting)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

import aiohttp
import numpy as np
from loadgen import free_port, post_script, wait_port, wrk

from bytewax_nb import Swarm, Tensor

_ECHO_AIOHTTP = textwrap.dedent(
    """
    import sys, uvloop
    from aiohttp import web
    async def echo(request):
        return web.Response(body=await request.read(), content_type="application/json")
    app = web.Application()
    app.router.add_post("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=uvloop.new_event_loop())
    """
)
_ECHO_GRANIAN = textwrap.dedent(
    """
    import sys
    from granian import Granian
    from granian.constants import Interfaces, Loops
    async def app(scope, proto):
        body = await proto()
        proto.response_bytes(200, [("content-type", "application/json")], body)
    Granian("__main__:app", address="127.0.0.1", port=int(sys.argv[1]), interface=Interfaces.RSGI,
            workers=1, loop=Loops.uvloop, log_enabled=False).serve()
    """
)
_ZMQ_PEER = textwrap.dedent(
    """
    import sys, zmq
    sock = zmq.Context().socket(zmq.REP)
    if len(sys.argv) > 2:  # CurveZMQ, as the bus has it: the server's secret key
        sock.curve_server = True
        sock.curve_secretkey = sys.argv[2].encode()
    sock.bind(f"tcp://127.0.0.1:{sys.argv[1]}")
    while True:
        sock.send(sock.recv(copy=False), copy=False)
    """
)


def _wrk(url: str, body: str, concurrency: int, seconds: float, tmp: str) -> tuple[float, float, int]:
    """(req/s, p50 ms, non-2xx) of a closed-loop POST load."""
    rps, p50, _p99, bad = wrk(url, concurrency, seconds, post_script(tmp, body))
    return rps, p50, bad


def _server(code: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)])
    wait_port(port)
    return proc, port


# -- streams ---------------------------------------------------------------------------


async def _first_chunks(url: str, payload: object, n: int, stream: bool) -> list[float]:
    """Seconds to the first byte of the answer's first chunk (a plain answer: to its end)."""
    out = []
    headers = {"Accept": "application/x-ndjson"} if stream else {}
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t = time.perf_counter()
            async with session.post(url, json=payload, headers=headers) as r:
                if stream:
                    await r.content.readline()
                    out.append(time.perf_counter() - t)
                    await r.read()
                else:
                    await r.read()
                    out.append(time.perf_counter() - t)
    return out


async def _chunk_rate(url: str, payload: object, concurrency: int, seconds: float) -> tuple[float, int]:
    """Chunks per second read by `concurrency` streaming callers, and failed streams."""
    chunks = failed = 0
    end = time.monotonic() + seconds

    async def caller(session: aiohttp.ClientSession) -> None:
        nonlocal chunks, failed
        while time.monotonic() < end:
            async with session.post(url, json=payload, headers={"Accept": "application/x-ndjson"}) as r:
                lines = (await r.read()).splitlines()
                if r.status != 200 or not lines[-1].startswith(b'{"end"'):
                    failed += 1
                chunks += len(lines) - 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(caller(session) for _ in range(concurrency)))
    return chunks / seconds, failed


def bench_streams(seconds: float, n: int) -> list[str]:
    swarm = Swarm("bench-stream", runtime="process", on_log=None)
    swarm.gateway("plain")
    swarm.bee(lambda p: p["text"].split()[0], input="plain", name="first")
    swarm.gateway("tokens")

    def tokens(p: dict[str, object]) -> Iterator[str]:
        yield from str(p["text"]).split()

    swarm.bee(tokens, input="tokens", name="generate")
    one = {"text": "token"}
    many = {"text": " ".join(f"t{i}" for i in range(100))}
    with swarm:
        asyncio.run(_first_chunks(swarm.url("plain"), one, 50, False))  # warm-up
        plain = statistics.median(asyncio.run(_first_chunks(swarm.url("plain"), one, n, False)))
        first = statistics.median(asyncio.run(_first_chunks(swarm.url("tokens"), many, n, True)))
        rate1, failed1 = asyncio.run(_chunk_rate(swarm.url("tokens"), many, 1, seconds))
        rate32, failed32 = asyncio.run(_chunk_rate(swarm.url("tokens"), many, 32, seconds))
    return [
        f"stream  plain answer (c=1, median)          {plain * 1e3:8.3f} ms",
        f"stream  first chunk of 100 (c=1, median)    {first * 1e3:8.3f} ms  "
        f"({(first - plain) * 1e3:+.3f} ms)",
        f"stream  chunks/s c=1  {rate1:10.0f}   c=32 {rate32:10.0f}   failed streams {failed1 + failed32}",
    ]


# -- the Open Inference Protocol -------------------------------------------------------


async def _binary_rate(url: str, arr: np.ndarray, seconds: float) -> tuple[float, int]:
    """MB/s of a tensor sent and answered with the binary-data extension (c=1)."""
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": list(arr.shape),
                    "parameters": {"binary_data_size": arr.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = head + arr.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    moved = errors = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            async with session.post(url, data=body, headers=headers) as r:
                answer = await r.read()
                if r.status != 200 or len(answer) < arr.nbytes:
                    errors += 1
                moved += arr.nbytes * 2
    return moved / seconds / 1e6, errors


def _zmq_rate(nbytes: int, seconds: float, curve: bool = False) -> float:
    """MB/s of `nbytes` sent and echoed by another process over loopback TCP (c=1),
    encrypted with CurveZMQ (as the bus is by default) if `curve`."""
    import zmq

    port = free_port()
    server_public, server_secret = zmq.curve_keypair()
    extra = [server_secret.decode()] if curve else []
    proc = subprocess.Popen([sys.executable, "-c", _ZMQ_PEER, str(port), *extra])
    sock = zmq.Context.instance().socket(zmq.REQ)
    if curve:
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = server_public
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        payload = np.ones(nbytes, dtype=np.uint8).tobytes()
        sock.send(payload)
        sock.recv()  # connected
        moved, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            sock.send(payload, copy=False)
            sock.recv(copy=False)
            moved += nbytes * 2
        return moved / seconds / 1e6
    finally:
        sock.close(linger=0)
        proc.terminate()
        proc.wait()


def bench_oip(seconds: float, tmp: str) -> list[str]:
    swarm = Swarm("bench-oip", runtime="process", on_log=None)
    swarm.gateway("iris", max_body=8 * 1024 * 1024)

    def model(x: Tensor[np.float32, -1, 4]) -> Tensor[np.float32, -1, 4]:  # type: ignore[valid-type]
        return x

    swarm.bee(model, input="iris", name="model")
    swarm.gateway("big", max_body=8 * 1024 * 1024)

    def identity(x: Tensor[np.float32, -1]) -> Tensor[np.float32, -1]:  # type: ignore[valid-type]
        return x

    swarm.bee(identity, input="big", name="identity")
    lines = []
    with swarm:
        plain_url = swarm.url("iris")
        v2_url = plain_url.replace("/gateways/iris", "/v2/models/iris/infer")
        plain = json.dumps({"x": [[5.1, 3.5, 1.4, 0.2]]})
        v2 = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
        )
        _wrk(plain_url, plain, 8, 1, tmp)  # warm-up
        for c in (1, 32):
            p_rps, p_p50, p_bad = _wrk(plain_url, plain, c, seconds, tmp)
            v_rps, v_p50, v_bad = _wrk(v2_url, v2, c, seconds, tmp)
            lines.append(
                f"oip     1x4 FP32 c={c:<2}  plain JSON {p_rps:8.0f} req/s p50 {p_p50:.3f} ms   "
                f"v2 infer {v_rps:8.0f} req/s p50 {v_p50:.3f} ms   v2/plain {v_rps / p_rps:.0%}   "
                f"non-2xx {p_bad + v_bad}"
            )
        big_url = swarm.url("big").replace("/gateways/big", "/v2/models/big/infer")
        arr = np.ones(256 * 1024, dtype=np.float32)  # 1 MB
        asyncio.run(_binary_rate(big_url, arr, 0.5))  # warm-up
        oip_mb, errors = asyncio.run(_binary_rate(big_url, arr, seconds))
    zmq_mb = _zmq_rate(arr.nbytes, seconds)
    curve_mb = _zmq_rate(arr.nbytes, seconds, curve=True)
    proc, port = _server(_ECHO_AIOHTTP)
    try:
        echo_mb = asyncio.run(_echo_rate(f"http://127.0.0.1:{port}/echo", arr.tobytes(), seconds))
    finally:
        proc.terminate()
        proc.wait()
    lines.append(
        f"oip     1 MB binary tensor in and out (c=1): v2 {oip_mb:6.0f} MB/s   "
        f"raw pyzmq {zmq_mb:6.0f} (v2 {oip_mb / zmq_mb:.0%})   pyzmq+CurveZMQ {curve_mb:6.0f} "
        f"(v2 {oip_mb / curve_mb:.0%})   aiohttp echo {echo_mb:6.0f} (v2 {oip_mb / echo_mb:.0%})   "
        f"errors {errors}"
    )
    return lines


async def _echo_rate(url: str, body: bytes, seconds: float) -> float:
    moved, end = 0, time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            async with session.post(url, data=body) as r:
                await r.read()
                moved += len(body) * 2
    return moved / seconds / 1e6


# -- the HTTP core ---------------------------------------------------------------------


def bench_http(seconds: float, tmp: str) -> list[str]:
    lines = []
    body = '{"name": "Bee", "x": 1}'
    cases = [("aiohttp echo", _ECHO_AIOHTTP), ("granian echo", _ECHO_GRANIAN)]
    try:
        import granian  # noqa: F401
    except ImportError:
        cases.pop()
        lines.append("http    granian is not installed: pip install granian")
    for name, code in cases:
        proc, port = _server(code)
        try:
            url = f"http://127.0.0.1:{port}/echo"
            _wrk(url, body, 8, 1, tmp)
            figures = [_wrk(url, body, c, seconds, tmp) for c in (1, 32)]
        finally:
            proc.terminate()
            proc.wait()
        lines.append(
            f"http    {name:<14} c=1 {figures[0][0]:8.0f} req/s p50 {figures[0][1]:.3f} ms   "
            f"c=32 {figures[1][0]:8.0f} req/s"
        )
    swarm = Swarm("bench-http", runtime="process", on_log=None)
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="echo")
    with swarm:
        _wrk(swarm.url("in"), body, 8, 1, tmp)
        figures = [_wrk(swarm.url("in"), body, c, seconds, tmp) for c in (1, 32)]
    lines.append(
        f"http    {'gateway (1 bee)':<14} c=1 {figures[0][0]:8.0f} req/s p50 {figures[0][1]:.3f} ms   "
        f"c=32 {figures[1][0]:8.0f} req/s"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="short runs")
    args = parser.parse_args()
    seconds = 1.0 if args.smoke else args.seconds
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")
    tmp = tempfile.mkdtemp()
    lines = bench_streams(seconds, 50 if args.smoke else 500)
    lines += bench_oip(seconds, tmp)
    lines += bench_http(seconds, tmp)
    print("\n".join(lines))
    if any(re.search(r"(failed streams|non-2xx|errors) [1-9]", line) for line in lines):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
