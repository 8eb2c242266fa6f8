"""Streamed answers on real processes and sockets: a generator bee (or `ctx.stream`)
sends each chunk as it is made; callers get Server-Sent Events, NDJSON or one JSON list;
a slow reader slows the bee; a caller that goes away closes the generator; a replica
that dies mid-stream ends it with an error, never with silence or repeated chunks."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from conftest import wait_until

from bytewax_nb import DevSwarm, RemoteError
from bytewax_nb.model.errors import RequestTimeout
from bytewax_nb.widget.graph import Rates, graph


def _post(url: str, payload: Any, accept: str | None = None, timeout: float = 30) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/json"} | ({"Accept": accept} if accept else {})
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def _events(text: str) -> list[tuple[str, Any]]:
    """(event, data) of an SSE body ("message" when no event is named)."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def _settled(made: Path, quiet: float = 0.5, timeout: float = 30) -> int:
    """How many lines `made` holds once it has not grown for `quiet` seconds (a
    measurement of what a stalled reader lets the producer make)."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        now = len(made.read_text().split()) if made.exists() else 0
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since >= quiet:
            return now
        time.sleep(0.05)
    raise AssertionError(f"{made} grew for {timeout} s ({last} lines): nothing holds the producer back")


def _tokens(make_swarm: Any, **bee: Any) -> Any:
    swarm = make_swarm()
    swarm.gateway("prompt", timeout=10)

    def generate(payload: dict[str, Any]) -> Any:
        for i in range(payload["n"]):
            if payload.get("fail_at") == i:
                raise ValueError(f"no token {i}")
            yield {"token": f"t{i}"}

    swarm.bee(generate, input="prompt", **bee)
    return swarm.start()


def test_a_generator_bee_streams_as_sse_ndjson_or_one_list(make_swarm: Any) -> None:
    swarm = _tokens(make_swarm)
    url = swarm.url("prompt")
    tokens = [{"token": f"t{i}"} for i in range(3)]
    status, kind, body = _post(url, {"n": 3}, "text/event-stream")
    assert (status, kind) == (200, "text/event-stream")
    assert _events(body) == [*(("message", t) for t in tokens), ("end", {"end": True, "chunks": 3})]
    status, kind, body = _post(url, {"n": 3}, "application/x-ndjson")
    assert (status, kind) == (200, "application/x-ndjson")
    assert [json.loads(line) for line in body.splitlines()] == [
        *({"chunk": t} for t in tokens),
        {"end": True, "chunks": 3},
    ]
    assert _post(url, {"n": 3}) == (200, "application/json", json.dumps(tokens, separators=(",", ":")))
    assert list(swarm.stream("prompt", {"n": 3})) == tokens
    assert swarm.request("prompt", {"n": 0}) == []  # a stream of nothing
    # status and the widget count streams and chunks (a rate from two snapshots)
    rates = Rates()
    graph(swarm.topology, swarm.status(), rates, now=0.0)
    before = swarm.status()["gateways"]["prompt"]
    assert (before["streams"], before["chunks"]) == (0, 12)  # none open now; 3 + 3 + 3 + 3 chunks
    assert list(swarm.stream("prompt", {"n": 10})) == [{"token": f"t{i}"} for i in range(10)]
    (node, *_), _ = graph(swarm.topology, swarm.status(), rates, now=2.0)
    assert node["kind"] == "gateway" and node["streams"] == 0 and node["chunk_rate"] == 5.0
    # a plain answer asked for as a stream is one chunk
    swarm.bee(lambda p: {"plain": p}, input="prompt", name="generate")
    assert list(swarm.stream("prompt", 5)) == [{"plain": 5}]


def test_a_bees_error_mid_stream_is_an_error_event_after_the_chunks_made(make_swarm: Any) -> None:
    swarm = _tokens(make_swarm)
    url = swarm.url("prompt")
    events = _events(_post(url, {"n": 5, "fail_at": 2}, "text/event-stream")[2])
    assert events[:2] == [("message", {"token": "t0"}), ("message", {"token": "t1"})]
    ((kind, err),) = events[2:]
    assert kind == "error" and (err["bee"], err["type"], err["error"]) == (
        "generate",
        "ValueError",
        "no token 2",
    )
    lines = [
        json.loads(line)
        for line in _post(url, {"n": 5, "fail_at": 1}, "application/x-ndjson")[2].splitlines()
    ]
    assert lines[0] == {"chunk": {"token": "t0"}} and lines[1]["type"] == "ValueError" and len(lines) == 2
    status, _, body = _post(url, {"n": 5, "fail_at": 1})  # no stream asked for: an ordinary error
    assert status == 500 and json.loads(body)["error"] == "no token 1"
    got = []
    with pytest.raises(RemoteError) as err:
        for chunk in swarm.stream("prompt", {"n": 5, "fail_at": 3}):
            got.append(chunk)
    assert (
        len(got) == 3
        and err.value.ename == "ValueError"
        and "no token 3" in err.value.traceback + str(err.value)
    )
    assert swarm.status()["bees"]["generate"]["errors"] == 4


def test_streams_pass_through_fused_chains_and_across_processes_in_order(make_swarm: Any) -> None:
    for fuse in (True, False):
        swarm = make_swarm(f"chain-{fuse}", fuse=fuse)
        swarm.gateway("in", timeout=10)

        @swarm.bee(input="in")
        def words(text: str) -> Any:
            yield from text.split()

        @swarm.bee(input="words", replicas=1 if fuse else 3)  # three replicas: chunks may overtake
        def shout(word: str) -> Any:
            time.sleep(0.001 * (len(word) % 3))
            return None if word == "skip" else word.upper()

        swarm.start()
        assert bool(swarm.status()["bees"]["shout"]["group"]) is fuse
        text = " ".join(f"w{i}" if i % 7 else "skip" for i in range(60))
        expected = [w.upper() for w in text.split() if w != "skip"]
        assert list(swarm.stream("in", text)) == expected
        assert swarm.request("in", text) == expected  # the whole stream as one list
        assert swarm.test("in", text) == expected  # and in this process, the same
        swarm.stop()


def test_ctx_stream_and_async_generators_stream_too(make_swarm: Any) -> None:
    swarm = make_swarm(fuse=False)
    swarm.gateway("in")

    @swarm.bee(input="in")
    def explicit(n: int, ctx: Any) -> Any:
        for i in range(n):
            ctx.stream(i)
        return "done"  # the last chunk

    swarm.gateway("aio")

    @swarm.bee(input="aio")
    async def agen(n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield i * i

    swarm.start()
    assert list(swarm.stream("in", 3)) == [0, 1, 2, "done"]
    assert list(swarm.stream("aio", 4)) == [0, 1, 4, 9]
    dev = DevSwarm()
    assert dev.run(explicit, 2) == "done" and dev.streamed == [0, 1]
    assert DevSwarm().run(agen, 3) == [0, 1, 4]


def test_a_slow_reader_slows_the_bee_and_a_reader_that_leaves_closes_its_generator(
    make_swarm: Any, tmp_path: Path
) -> None:
    made, closed = tmp_path / "made", tmp_path / "closed"
    swarm = make_swarm()
    swarm.gateway("in", timeout=30)

    @swarm.bee(input="in")
    def counter(n: int) -> Any:
        try:
            for i in range(n):
                with open(made, "a") as f:
                    f.write(f"{i}\n")
                yield {"i": i, "pad": "x" * 65536}  # big enough that the sockets' buffers fill
        except GeneratorExit:
            closed.write_text("closed")
            raise

    swarm.start()
    parsed = urlparse(swarm.url("in"))
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    conn.request("POST", parsed.path, body=b"100000", headers={"Accept": "application/x-ndjson"})
    resp = conn.getresponse()
    assert json.loads(resp.readline())["chunk"]["i"] == 0  # reading one chunk, then nothing
    # the bee makes what its window and the sockets' buffers let it, then waits
    settled = _settled(made)
    assert 16 <= settled < 1000, settled  # 64 MB at most: the rest waits in the generator
    assert swarm.status()["gateways"]["in"]["streams"] == 1  # open, and shown as such
    for _ in range(100):  # reading on lets it go on
        resp.readline()
    wait_until(lambda: len(made.read_text().split()) > settled + 50, what="the bee going on")
    conn.close()  # the caller goes away: GeneratorExit in the bee
    wait_until(closed.exists, timeout=20, what="the generator closed")
    assert len(made.read_text().split()) < 100000
    url = swarm.url("in").replace("/gateways/in", "/metrics")
    metrics = urllib.request.urlopen(url).read().decode()
    assert 'bytewax_nb_gateway_streams_closed_early_total{gateway="in"} 1.0' in metrics
    assert [c["i"] for c in swarm.stream("in", 3)] == [0, 1, 2]  # and the bee serves on


def test_the_timeout_applies_per_chunk(make_swarm: Any) -> None:
    swarm = make_swarm()
    swarm.gateway("in", timeout=1.0)

    @swarm.bee(input="in", timeout=None)
    def slow(gaps: list[float]) -> Any:
        for i, gap in enumerate(gaps):
            time.sleep(gap)
            yield i

    swarm.start()
    # 2.5 s in all, each chunk within 1 s of the one before: the stream goes through
    assert list(swarm.stream("in", [0.5] * 5)) == [0, 1, 2, 3, 4]
    got = []
    with pytest.raises(RequestTimeout):
        for chunk in swarm.stream("in", [0.1, 0.1, 3.0, 0.1]):
            got.append(chunk)
    assert got == [0, 1]


@pytest.mark.slow
def test_a_replica_dying_mid_stream_ends_it_with_an_error_and_repeats_nothing(
    make_swarm: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    swarm = make_swarm()
    swarm.gateway("in", timeout=20)

    @swarm.bee(input="in", replicas=2, retries=3)
    def tokens(n: int) -> Any:
        for i in range(n):
            if i == 3:
                marker.write_text(str(os.getpid()))
                threading.Event().wait(30)  # held here until killed
            yield i

    swarm.start()
    got: list[int] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for chunk in swarm.stream("in", 10):
                got.append(chunk)
        except Exception as exc:  # noqa: BLE001 - what the caller gets is what is asserted
            failure.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: marker.exists() and marker.read_text(), what="the stream held after 3 chunks")
    os.kill(int(marker.read_text()), signal.SIGKILL)
    reader.join(timeout=30)
    assert got == [0, 1, 2]  # nothing twice: the stream was not started again on the other replica
    (err,) = failure
    assert isinstance(err, RemoteError) and err.ename == "ReplicaDied", err
    # a stream that dies before its first chunk is sent again like any message
    marker.unlink()
    assert swarm.request("in", 3) == [0, 1, 2]
