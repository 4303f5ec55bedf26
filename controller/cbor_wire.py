"""Smithy's RPC v2 CBOR protocol, the body codec boto3 uses for Cloud Map (issue 21).

botocore's Cloud Map model lists `smithy-rpc-v2-cbor` before `json`, so boto3 (since
botocore 1.4x) posts CBOR to `/service/Route53AutoNaming_v20170314/operation/<Op>`; the
aws CLI and older clients send JSON 1.1 to `/`. Both reach the same operations: this module
turns a CBOR request into the JSON-shaped dict the handlers take and a handler's answer
(already checked and parsed against the model by controller.ecs_shapes) into CBOR.
The wire format is botocore's own encoder and decoder, not a hand-rolled one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from botocore.model import Shape, ShapeResolver, StructureShape
from botocore.parsers import RpcV2CBORParser
from botocore.serialize import RpcV2CBORSerializer

from controller.ecs_shapes import epoch
from dockyard.errors import ApiError

CONTENT_TYPE = "application/cbor"
PROTOCOL_HEADER = {"smithy-protocol": "rpc-v2-cbor"}

_ERROR_SHAPE = StructureShape(
    "Error",
    {"type": "structure", "members": {"__type": {"shape": "S"}, "message": {"shape": "S"}}},
    ShapeResolver({"S": {"type": "string"}}),
)


def _jsonable(value: Any) -> Any:
    """CBOR's decoded values as JSON's: datetimes as epoch seconds, bytes refused."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return epoch(value)
    if isinstance(value, bytes | bytearray):
        raise ApiError("SerializationException", "byte strings are not accepted")
    return value


def decode(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON-shaped dict; SerializationException if it is not a map."""
    if not raw:
        return {}
    parser = RpcV2CBORParser()
    try:
        value = parser.parse_data_item(parser.get_peekable_stream_from_bytes(raw))
    except Exception:  # any decoding failure is the client's
        raise ApiError("SerializationException", "the body is not valid CBOR") from None
    if not isinstance(value, dict):
        raise ApiError("SerializationException", "the request body must be a CBOR map")
    out: dict[str, Any] = json.loads(json.dumps(_jsonable(value)))
    return out


def encode(parsed: dict[str, Any], shape: Shape | None) -> bytes:
    """A response (botocore's parse of it: datetimes, not epochs) as CBOR."""
    body = bytearray()
    if shape is None:
        shape = StructureShape("Empty", {"type": "structure", "members": {}})
    RpcV2CBORSerializer()._serialize_data_item(body, parsed, shape)
    return bytes(body)


def encode_error(name: str, message: str) -> bytes:
    body = bytearray()
    RpcV2CBORSerializer()._serialize_data_item(
        body, {"__type": name, "message": message}, _ERROR_SHAPE
    )
    return bytes(body)
