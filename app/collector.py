"""The Segment-compatible HTTP collector: `POST /v1/batch`, `/v1/track`, ..., `/v1/b`, `/v1/t`, ...

Speaks Segment's HTTP Tracking API so an unchanged Segment library can send to Kairos: JSON body
whatever the Content-Type, gzip accepted, write key by HTTP Basic (`base64("<writeKey>:")`) or
`writeKey` in the body, 32 KB per event and 500 KB per request. A request is written whole or not
at all: it is validated completely before anything is sent, and answered `{"success": true}` only
once the broker has acknowledged the write.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
import uuid
import zlib
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from aiohttp.web_protocol import RequestPayloadError
from faust.types.web import ResourceOptions
from faust.web import Request, Response, View

from app.faust_app import app, events_topic, settings
from app.intake import Rejected, decode_json, event_record
from app.metrics import EVENTS_INVALID, HTTP_REQUESTS
from schemas.segment import MAX_BATCH_BYTES, MAX_EVENT_BYTES, SHORT_PATHS

#: Collector path → the event type its body holds (None: a batch).
ROUTES: dict[str, str | None] = {"batch": None, "b": None}
for _short, _type in SHORT_PATHS.items():
    ROUTES[_type] = _type
    ROUTES[_short] = _type

_CORS = {
    "*": ResourceOptions(
        allow_credentials=True, allow_headers="*", expose_headers="*", max_age=3600
    )
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, reason: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        #: Close the connection after the answer: the rest of the body cannot be read.
        self.close = close


def _body(raw: bytes, limit: int) -> bytes:
    """The request body, gunzipped when it is gzip, refusing more than `limit` bytes.

    aiohttp already inflates bodies sent with `Content-Encoding: gzip` (within client_max_size);
    a gzip body sent without that header is recognized by its magic bytes.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            # Bounded decompression: a small gzip bomb must not become a huge body in memory.
            raw = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(raw, limit + 1)
        except zlib.error as exc:
            raise HttpError(400, f"body: not valid gzip ({exc})", "invalid_json") from exc
    if len(raw) > limit:
        raise HttpError(
            413, f"body: more than the {limit // 1024} KB limit of this endpoint", "too_large"
        )
    return raw


def _write_key(request: Request, body: Any) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0]
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return str(body["writeKey"])
    return None


def _authorized(key: str | None) -> bool:
    return key is not None and any(
        hmac.compare_digest(key.encode(), known.encode()) for known in settings.write_keys
    )


def _events(body: Any, event_type: str | None) -> list[tuple[Any, str]]:
    """(event object, path for error messages) of each event in a request body."""
    if event_type is not None:
        return [(body, "")]
    if not isinstance(body, dict):
        raise HttpError(400, "body: must be a JSON object with a `batch` list", "invalid_event")
    batch = body.get("batch")
    if not isinstance(batch, list) or not batch:
        raise HttpError(400, "batch: must be a non-empty list of events", "invalid_event")
    shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
    events = []
    for i, item in enumerate(batch):
        if isinstance(item, dict) and shared:
            item = {**shared, **item}
        events.append((item, f"batch[{i}]"))
    return events


async def collect(request: Request, endpoint: str, event_type: str | None) -> dict[str, Any]:
    """Validate a collector request whole, write its events, and say how many."""
    limit = MAX_BATCH_BYTES if event_type is None else MAX_EVENT_BYTES
    try:
        raw = await request.read()
    except HTTPRequestEntityTooLarge as exc:  # inflated by aiohttp beyond client_max_size
        raise HttpError(413, f"body: more than the {limit // 1024} KB limit", "too_large") from exc
    except (RequestPayloadError, HttpProcessingError) as exc:  # e.g. `Content-Encoding: gzip`
        # Marked read: aiohttp would otherwise read the rest of the body after the answer, meet
        # the same error, and log it at ERROR with a traceback, for any client to repeat.
        if isinstance(request, web.BaseRequest):
            request.content.feed_eof()
        raise HttpError(
            400, "body: cannot be decoded (Content-Encoding)", "invalid_json", close=True
        ) from exc
    if len(raw) > limit * 4:  # compressed or not, nothing valid is this large
        raise HttpError(413, f"body: more than the {limit // 1024} KB limit", "too_large")
    body_bytes = _body(raw, limit)
    try:
        body = decode_json(body_bytes)
    except Rejected as exc:
        raise HttpError(400, f"body: {exc.reason}", exc.code) from exc
    if not _authorized(_write_key(request, body)):
        raise HttpError(401, "a valid write key is required (HTTP Basic or writeKey)", "auth")
    received = int(time.time() * 1000)
    records = []
    for obj, where in _events(body, event_type):
        if isinstance(obj, dict):
            # The receive time is the server's, as in Segment's API: a client's own `receivedAt`
            # would move the bound on how far ahead an event time may be (engine.clock).
            obj = {k: v for k, v in obj.items() if k not in ("writeKey", "receivedAt")}
            # As Segment's API: a request without messageId is a new event. (On input topics a
            # missing id is derived from the content instead, so that a replay gives the same id.)
            if not obj.get("messageId"):
                obj["messageId"] = str(uuid.uuid4())
        try:
            records.append(
                event_record(obj, received, where=where, default_type=event_type, as_written=True)
            )
        except Rejected as exc:
            status = 413 if exc.code == "too_large" else 400
            raise HttpError(status, exc.reason, exc.code) from exc
    # One envelope per partition: all events of one identity go to the same partition, so they
    # are ingested in the order they were sent, and a request costs at most one Kafka record per
    # partition however many events it holds (the ingest agent splits envelopes).
    envelopes: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        envelopes.setdefault(identity_partition(record["key"]), []).append(record["event"])
    sent = [
        await events_topic.send(value=orjson.dumps({"batch": batch}), partition=partition)
        for partition, batch in envelopes.items()
    ]
    for delivery in sent:
        await delivery
    return {"success": True}


def identity_partition(identity: str) -> int:
    """The `kairos.events` partition of an identity: stable, so its events stay in order."""
    return zlib.crc32(identity.encode("utf-8", "surrogatepass")) % settings.partitions


def _collector_view(endpoint: str, event_type: str | None) -> type[View]:
    class CollectorView(View):
        async def post(self, request: Request) -> Response:
            try:
                answer = await collect(request, endpoint, event_type)
            except HttpError as exc:
                HTTP_REQUESTS.labels(endpoint=endpoint, status=str(exc.status)).inc()
                if exc.status != 401:
                    EVENTS_INVALID.labels(reason=exc.reason, source="http").inc()
                refusal = self.json({"success": False, "message": exc.message}, status=exc.status)
                if exc.close and isinstance(refusal, web.StreamResponse):
                    refusal.force_close()
                return refusal
            HTTP_REQUESTS.labels(endpoint=endpoint, status="200").inc()
            return self.json(answer)

    CollectorView.__name__ = f"Collector_{endpoint}"
    return CollectorView


for _path, _event_type in ROUTES.items():
    app.page(f"/v1/{_path}", name=f"collector_{_path}", cors_options=_CORS)(
        _collector_view(_path, _event_type)
    )
