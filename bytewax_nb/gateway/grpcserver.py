"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), for the
gateways made with `grpc_port`: one server per port, in the hub's event loop, serving
each of those gateways as the model of its name (see `modelcall`). Needs the `grpc`
extra (grpcio, protobuf).

The messages are our own stubs of the protocol's proto (oip/oip.proto, in a package of
our own so tritonclient's stubs can share a process with them); the handlers are
registered under the protocol's service name, which is all that travels on the wire.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from .inference import InferCall, InferError, check, from_tensors, metadata, server_metadata
from .modelcall import Gateway, infer, infer_stream, model_io
from .oip import oip_pb2 as pb

__all__ = ["ModelServer"]

SERVICE = "inference.GRPCInferenceService"
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# datatype -> the typed contents field a client may send instead of raw bytes
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _parameter(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def call_from(req: Any, declared: list[Any]) -> InferCall:
    """A gRPC infer request, checked as an HTTP one is (raw contents, or typed ones)."""
    raws = list(req.raw_input_contents)
    if raws and len(raws) != len(req.inputs):
        raise InferError(f"{len(raws)} raw_input_contents for {len(req.inputs)} inputs")
    inputs: list[dict[str, Any]] = []
    for i, t in enumerate(req.inputs):
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if raws:
            entry["parameters"] = {"binary_data_size": len(raws[i])}
        else:
            field = _CONTENTS.get(t.datatype)
            if field is None:
                raise InferError(f"input {t.name!r}: {t.datatype} travels only as raw_input_contents")
            data = list(getattr(t.contents, field))
            if t.datatype == "BYTES":
                try:
                    data = [b.decode() for b in data]
                except UnicodeDecodeError:
                    raise InferError(
                        f"input {t.name!r}: send BYTES that are not UTF-8 as raw contents"
                    ) from None
            entry["data"] = data
        inputs.append(entry)
    head: dict[str, Any] = {
        "inputs": inputs,
        "parameters": {k: _parameter(v) for k, v in req.parameters.items()},
    }
    if req.id:
        head["id"] = req.id
    if req.outputs:
        head["outputs"] = [{"name": o.name} for o in req.outputs]
    return check(head, memoryview(b"".join(raws)), declared)


def _response(model: str, call: InferCall, outputs: list[Any], buffers: list[Any]) -> Any:
    wanted = [n for n, _ in call.wanted] if call.wanted else None
    out = pb.ModelInferResponse(model_name=model, model_version="1", id=call.id or "")
    for entry, raw in from_tensors(outputs, buffers, wanted):
        out.outputs.add(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"])
        out.raw_output_contents.append(bytes(raw))
    return out


class ModelServer:
    """One gRPC server and the gateways (models) it serves."""

    def __init__(self, host: str, port: int, healthy: Callable[[], bool], max_message: int) -> None:
        self.models: dict[str, Gateway] = {}
        self._healthy = healthy
        options = [("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", -1)]
        self.server = grpc.aio.server(options=options)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, self._handlers()),)
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port} for gRPC")

    def _handlers(self) -> dict[str, Any]:
        def unary(fn: Any, request: Any, response: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
            )

        return {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": unary(
                self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
            ),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
                self.model_stream_infer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=pb.ModelStreamInferResponse.SerializeToString,
            ),
        }

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)

    # -- the service ------------------------------------------------------------------

    async def server_live(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._healthy())

    async def model_ready(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=request.name in self.models and self._healthy())

    async def server_metadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**server_metadata())

    async def model_metadata(self, request: Any, context: Any) -> Any:
        gw = await self._model(request.name, request.version, context)
        return pb.ModelMetadataResponse(**metadata(gw.name, *model_io(gw.contract)))

    async def model_infer(self, request: Any, context: Any) -> Any:
        gw = await self._model(request.model_name, request.model_version, context)
        try:
            call = call_from(request, model_io(gw.contract)[0])
            outputs, buffers = await infer(gw, call)
            return _response(gw.name, call, outputs, buffers)
        except InferError as exc:
            await context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))

    async def model_stream_infer(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        """Each request answered in turn: every chunk of a streaming bee as a response of
        its own; a failed request is an error_message and the stream goes on."""
        async for request in requests:
            try:
                gw = self._known(request.model_name, request.model_version, context)
                call = call_from(request, model_io(gw.contract)[0])
                async for outputs, buffers in infer_stream(gw, call):
                    yield pb.ModelStreamInferResponse(
                        infer_response=_response(gw.name, call, outputs, buffers)
                    )
            except InferError as exc:
                yield pb.ModelStreamInferResponse(error_message=str(exc))

    def _known(self, name: str, version: str, context: Any) -> Gateway:
        gw = self.models.get(name)
        if gw is None:
            raise InferError(f"unknown model {name!r}; served here: {sorted(self.models)}", 404)
        if version not in ("", "1"):
            raise InferError(f"model {name!r} has one version, 1", 404)
        token = gw.spec.token
        if token is not None:
            given = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not hmac.compare_digest(str(given).encode(), f"Bearer {token}".encode()):
                raise InferError("missing or bad bearer token (metadata: authorization)", 401)
        return gw

    async def _model(self, name: str, version: str, context: Any) -> Gateway:
        try:
            return self._known(name, version, context)
        except InferError as exc:
            await context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
            raise  # abort raises; this line is for the type checker
