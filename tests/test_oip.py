"""The Open Inference Protocol (v2) against a live swarm, called by clients nobody here
wrote: tritonclient over HTTP (JSON and binary tensors) and gRPC (unary and
ModelStreamInfer). Real processes, real sockets."""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from bytewax_nb import Tensor

W = np.arange(12, dtype=np.float32).reshape(4, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def models(make_swarm: Any) -> Iterator[tuple[Any, int]]:
    """A swarm with a tensor model (a fused chain: its second bee makes the outputs), a
    streaming bee without tensors (served through the JSON bridge) and a guarded one."""
    grpc_port = _free_port()
    swarm = make_swarm("oip")
    swarm.gateway("iris", timeout=10, grpc_port=grpc_port)

    @swarm.bee(input="iris")
    def features(x: Tensor[np.float32, -1, 4], names: Tensor[bytes, -1]) -> dict[str, Any]:  # type: ignore[valid-type]
        if x.shape[0] and x[0, 0] < 0:
            raise ValueError("negative first feature")
        return {"x": x, "names": names}

    @swarm.bee(input="features")
    def score(f: dict[str, Any]) -> dict[str, Any]:
        return {"scores": f["x"] @ W, "echo": f["names"]}

    swarm.gateway("words", timeout=10, grpc_port=grpc_port)

    @swarm.bee(input="words")
    def split(text: str) -> Iterator[str]:
        yield from text.split()

    swarm.gateway("guarded", token="s3cret", grpc_port=grpc_port)
    swarm.bee(lambda p: p, input="guarded", name="echo")
    swarm.start()
    yield swarm, grpc_port


def _host(swarm: Any, gateway: str) -> str:
    return swarm.url(gateway).split("//", 1)[1].split("/", 1)[0]


def _inputs(module: Any, x: np.ndarray, names: list[bytes], binary: bool = True) -> list[Any]:
    xi = module.InferInput("x", list(x.shape), "FP32")
    ni = module.InferInput("names", [len(names)], "BYTES")
    if module is httpclient:
        xi.set_data_from_numpy(x, binary_data=binary)
        ni.set_data_from_numpy(np.array(names, dtype=object), binary_data=binary)
    else:
        xi.set_data_from_numpy(x)
        ni.set_data_from_numpy(np.array(names, dtype=object))
    return [xi, ni]


def test_tritonclient_http_calls_a_tensor_model_with_json_and_binary_tensors(models: tuple[Any, int]) -> None:
    swarm, _ = models
    client = httpclient.InferenceServerClient(_host(swarm, "iris"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
        meta = client.get_model_metadata("iris")
        assert meta["inputs"] == [
            {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "names", "datatype": "BYTES", "shape": [-1]},
        ]
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        for binary in (True, False):
            outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("scores", "echo")]
            result = client.infer(
                "iris", _inputs(httpclient, x, [b"a", b"bc"], binary), outputs=outputs, request_id="r1"
            )
            np.testing.assert_array_equal(result.as_numpy("scores"), x @ W)
            assert result.as_numpy("echo").tolist() == ([b"a", b"bc"] if binary else ["a", "bc"])
            assert result.get_response()["id"] == "r1"
        # no outputs asked for: all of them, binary (tritonclient's default)
        whole = client.infer("iris", _inputs(httpclient, x, [b"z", b"y"]))
        np.testing.assert_array_equal(whole.as_numpy("scores"), x @ W)
        # a bad tensor is the protocol's 400, and no bee is called
        handled = swarm.status()["bees"]["features"]["handled"]
        bad = httpclient.InferInput("x", [2, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((2, 3), np.float32))
        with pytest.raises(InferenceServerException, match=r"shape \[2, 3\]") as err:
            client.infer("iris", [bad, _inputs(httpclient, x, [b"a", b"b"])[1]])
        assert err.value.status() == "400"
        with pytest.raises(InferenceServerException, match="missing input"):
            client.infer("iris", _inputs(httpclient, x, [b"a", b"b"])[:1])
        assert swarm.status()["bees"]["features"]["handled"] == handled
        # a bee's own error is a 500 with its words
        with pytest.raises(InferenceServerException, match="negative first feature") as err:
            client.infer("iris", _inputs(httpclient, x - 1, [b"a", b"b"]))
        assert err.value.status() == "500"
        with pytest.raises(InferenceServerException, match="unknown model") as err:
            client.get_model_metadata("nope")
        assert err.value.status() == "404"
    finally:
        client.close()


def test_a_tensor_bee_takes_plain_json_too(models: tuple[Any, int]) -> None:
    swarm, _ = models
    answer = swarm.request("iris", {"x": [[1, 0, 0, 0]], "names": ["n"]})
    assert answer == {"scores": [[0.0, 1.0, 2.0]], "echo": ["n"]}


def test_tritonclient_grpc_calls_models_and_streams_a_generator_bee(models: tuple[Any, int]) -> None:
    _, port = models
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        assert client.is_server_live() and client.is_model_ready("iris") and client.is_model_ready("words")
        meta = client.get_model_metadata("words", as_json=True)
        assert meta["inputs"] == [{"name": "payload", "datatype": "BYTES", "shape": ["1"]}]
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        result = client.infer("iris", _inputs(grpcclient, x, [b"q"]), request_id="g1")
        np.testing.assert_array_equal(result.as_numpy("scores"), x @ W)
        assert result.get_response().id == "g1"
        with pytest.raises(InferenceServerException, match=r"StatusCode\.INVALID_ARGUMENT"):
            client.infer("iris", _inputs(grpcclient, np.zeros((1, 5), np.float32), [b"q"]))
        with pytest.raises(InferenceServerException, match=r"StatusCode\.UNAUTHENTICATED"):
            client.get_model_metadata("guarded")
        assert (
            client.get_model_metadata("guarded", headers={"authorization": "Bearer s3cret"}).name == "guarded"
        )
        # ModelStreamInfer: every chunk of the generator is a response; a bad request is an
        # error on the stream, which goes on
        got: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        payload = grpcclient.InferInput("payload", [1], "BYTES")
        payload.set_data_from_numpy(np.array([json.dumps("a swarm streams").encode()], dtype=object))
        client.async_stream_infer("words", [payload], request_id="s1")
        client.async_stream_infer("nope", [payload], request_id="s2")
        client.async_stream_infer("words", [payload], request_id="s3")
        client.stop_stream()  # returns once the server has ended the stream
        answers = [got.get_nowait() for _ in range(got.qsize())]
        words = [(r.get_response().id, json.loads(r.as_numpy("answer")[0])) for r, e in answers if e is None]
        assert words == [
            ("s1", "a"),
            ("s1", "swarm"),
            ("s1", "streams"),
            ("s3", "a"),
            ("s3", "swarm"),
            ("s3", "streams"),
        ]
        (error,) = [e for _, e in answers if e is not None]
        assert "unknown model 'nope'" in error.message()
    finally:
        client.close()


def test_a_gateway_without_tensors_is_a_model_of_json_in_and_out(models: tuple[Any, int]) -> None:
    swarm, _ = models
    client = httpclient.InferenceServerClient(_host(swarm, "words"))
    try:
        payload = httpclient.InferInput("payload", [1], "BYTES")
        payload.set_data_from_numpy(np.array([b'"x y"'], dtype=object))
        assert json.loads(client.infer("words", [payload]).as_numpy("answer")[0]) == ["x", "y"]
        payload.set_data_from_numpy(np.array([b"{not json"], dtype=object))
        with pytest.raises(InferenceServerException, match="holds no JSON document") as err:
            client.infer("words", [payload])
        assert err.value.status() == "400"
    finally:
        client.close()
