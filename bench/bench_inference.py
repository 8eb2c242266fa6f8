"""Workloads shaped like real inference, each against the limit it cannot beat.

Not a test: prints one table. Load comes from wrk (closed loop, C), as in
bench_gateway.py; every BLAS is held to one thread in the bees and in the limits alike.

1. model: a random forest trained at start on scikit-learn's digits, served by one bee
   that batches (16, then 32), 2 replicas, at concurrency 64. Its limit: the same model
   called directly in 2 processes with the batch sizes the swarm made (rows/s).
2. ensemble: pre -> 3 models (forest, MLP, logistic regression) -> a join that votes,
   at concurrency 32: requests/s, p50, p99 (no limit: a shape, not a ceiling).
3. big values: a bee makes a 1 MB numpy array per request and two bees read it: MB/s
   between bee processes, against raw pyzmq moving 1 MB messages between two
   processes, with CurveZMQ (as the bus) and plain; then the bus not encrypted (still
   signed: an HMAC-SHA256 over every byte, on each side).

    python bench/bench_inference.py            # 5 s per case
    python bench/bench_inference.py --smoke    # 1 s per case, a smaller forest (CI)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: bees inherit it, the limits share it

import numpy as np  # noqa: E402
import zmq  # noqa: E402
from loadgen import wrk as _wrk  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from bytewax_nb import Swarm  # noqa: E402
from bytewax_nb.model.settings import ENCRYPT  # noqa: E402

MB = 1 << 20
Row = tuple[str, str, float, float, float, str, str]  # case, unit, rate, p50, p99, limit, share


def _lua(path: str, body: str) -> str:
    with open(path, "w") as f:
        f.write(
            f'wrk.method = "POST"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n'
        )
    return path


def _predict_loop(model: Any, rows: np.ndarray, seconds: float, out: Any) -> None:
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        model.predict(rows)
        done += len(rows)
    out.put(done / seconds)


def _compute_limit(model: Any, x: np.ndarray, batch: int, seconds: float) -> float:
    """Rows/s of the model called directly in 2 processes, `batch` rows a call."""
    q: Any = mp.get_context("fork").Queue()
    procs = [
        mp.get_context("fork").Process(target=_predict_loop, args=(model, x[:batch], seconds, q))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return float(total)


def case_model(
    x: np.ndarray, y: np.ndarray, trees: int, seconds: float, tmp: str, batch_size: int = 32
) -> Row:
    model = RandomForestClassifier(trees, random_state=0).fit(x, y)
    swarm = Swarm("bench-model", runtime="process", on_log=None)
    swarm.gateway("digits")

    @swarm.bee(input="digits", replicas=2, batch_size=batch_size, batch_timeout_ms=2)
    def classify(rows: list[list[float]]) -> list[int]:
        return [int(c) for c in model.predict(np.asarray(rows))]

    body = json.dumps([float(v) for v in x[0]])
    with swarm:
        url = swarm.url("digits")
        _wrk(url, 64, min(1.0, seconds), _lua(os.path.join(tmp, "row.lua"), body))  # warm-up
        rps, p50, p99, bad = _wrk(url, 64, seconds, os.path.join(tmp, "row.lua"))
        batch = swarm.status()["bees"]["classify"]["batch"]
    if bad:
        sys.exit(f"model: {bad} requests failed")
    limit = _compute_limit(model, x, max(1, round(batch)), seconds)
    return (
        f"model: forest {trees}, batch {batch_size} (~{batch:.0f})",
        "req/s",
        rps,
        p50,
        p99,
        f"{limit:.0f} rows/s",
        f"{rps / limit:.0%}",
    )


def case_ensemble(x: np.ndarray, y: np.ndarray, trees: int, seconds: float, tmp: str) -> Row:
    forest = RandomForestClassifier(max(10, trees // 4), random_state=0).fit(x, y)
    mlp = MLPClassifier((64,), max_iter=300, random_state=0).fit(x, y)
    logistic = LogisticRegression(max_iter=2000).fit(x, y)
    swarm = Swarm("bench-ensemble", runtime="process", on_log=None)
    swarm.gateway("digits")
    swarm.bee(lambda row: np.asarray(row, dtype=np.float64).reshape(1, -1), input="digits", name="pre")
    for name, m in (("forest", forest), ("mlp", mlp), ("logistic", logistic)):
        swarm.bee(lambda xs, m=m: int(m.predict(xs)[0]), input="pre", name=name)

    @swarm.bee(input=["forest", "mlp", "logistic"], join=True)
    def vote(parts: dict[str, int]) -> dict[str, Any]:
        votes = list(parts.values())
        return {"digit": max(set(votes), key=votes.count), "votes": parts}

    body = json.dumps([float(v) for v in x[0]])
    with swarm:
        url = swarm.url("digits")
        script = _lua(os.path.join(tmp, "vote.lua"), body)
        _wrk(url, 32, min(1.0, seconds), script)
        rps, p50, p99, bad = _wrk(url, 32, seconds, script)
    if bad:
        sys.exit(f"ensemble: {bad} requests failed")
    return ("ensemble: pre, 3 models, join", "req/s", rps, p50, p99, "-", "-")


def _pull(port: int, keys: tuple[bytes, bytes, bytes] | None, out: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    sock.connect(f"tcp://127.0.0.1:{port}")
    count, start = 0, 0.0
    while True:
        frame = sock.recv(copy=False)
        if len(frame) == 1:  # the end
            break
        if not count:
            start = time.perf_counter()
        count += 1
    out.put((count - 1) / (time.perf_counter() - start))
    ctx.destroy(linger=0)


def _raw_zmq(seconds: float, curve: bool) -> float:
    """MB/s of 1 MB messages between two processes over loopback TCP, nothing else."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    keys = None
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = server_public, server_secret
        keys = (client_public, client_secret, server_public)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    q: Any = mp.get_context("fork").Queue()
    reader = mp.get_context("fork").Process(target=_pull, args=(port, keys, q))
    reader.start()
    buf = bytearray(MB)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sock.send(buf, copy=False)
    sock.send(b"!")
    rate = float(q.get())
    reader.join()
    ctx.destroy(linger=0)
    return rate


def _big_values(seconds: float, tmp: str) -> tuple[float, float, float]:
    """MB/s from `array` to its two readers, and the requests' p50 and p99."""
    swarm = Swarm("bench-big", runtime="process", on_log=None)
    swarm.gateway("make")
    swarm.bee(lambda n: np.full(MB // 8, float(n)), input="make", name="array")  # 1 MB
    swarm.bee(lambda a: float(a[0] + a[-1]), input="array", name="reader")  # answers
    swarm.bee(lambda a: None, input="array", name="checker")  # reads it too, answers nothing
    with swarm:
        url = swarm.url("make")
        script = _lua(os.path.join(tmp, "make.lua"), "3")
        _wrk(url, 8, min(1.0, seconds), script)
        rps, p50, p99, bad = _wrk(url, 8, seconds, script)
    if bad:
        sys.exit(f"big values: {bad} requests failed")
    return rps * 2, p50, p99  # each request moves 1 MB to each of two readers


def case_big_values(seconds: float, tmp: str) -> list[Row]:
    secure, p50, p99 = _big_values(seconds, tmp)
    os.environ[ENCRYPT.name] = "0"  # the same, the bus signed but not encrypted
    try:
        signed, s50, s99 = _big_values(seconds, tmp)
    finally:
        del os.environ[ENCRYPT.name]
    plain, curve = _raw_zmq(seconds, curve=False), _raw_zmq(seconds, curve=True)
    return [
        (
            "1 MB arrays, 1 -> 2 bees",
            "MB/s",
            secure,
            p50,
            p99,
            f"{curve:.0f} MB/s raw+curve",
            f"{secure / curve:.0%}",
        ),
        ("", "", 0.0, 0.0, 0.0, f"{plain:.0f} MB/s raw", f"{secure / plain:.0%}"),
        (
            "  the same, not encrypted",
            "MB/s",
            signed,
            s50,
            s99,
            f"{plain:.0f} MB/s raw",
            f"{signed / plain:.0%}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--trees", type=int, default=300, help="the served forest's size")
    parser.add_argument("--smoke", action="store_true", help="1 s per case, a forest of 20 trees")
    args = parser.parse_args()
    seconds, trees = (1.0, 20) if args.smoke else (args.seconds, args.trees)
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")
    x, y = load_digits(return_X_y=True)
    tmp = tempfile.mkdtemp()
    # batches of 16 keep a second batch waiting behind each replica's call at concurrency
    # 64; batches of 32 (two full ones are all 64 callers) leave each replica idle while
    # its answers travel and new requests arrive: more requests/s, less of the limit
    rows = [case_model(x, y, trees, seconds, tmp, batch) for batch in (16, 32)]
    rows.append(case_ensemble(x, y, trees, seconds, tmp))
    rows += case_big_values(seconds, tmp)
    print(f"{'case':<32}{'rate':>10} {'unit':<6}{'p50 ms':>8}{'p99 ms':>8}  {'limit':<22}{'share':>6}")
    for case, unit, rate, p50, p99, limit, share in rows:
        if not case:
            print(f"{'':<32}{'':>10} {'':<6}{'':>8}{'':>8}  {limit:<22}{share:>6}")
            continue
        print(f"{case:<32}{rate:>10.0f} {unit:<6}{p50:>8.2f}{p99:>8.2f}  {limit:<22}{share:>6}")


if __name__ == "__main__":
    main()
