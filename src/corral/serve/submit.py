"""Reading a job from a request: a JSON body or a multipart upload, within the server's limits.

Everything a client can get wrong is refused here, before a job exists, with a 4xx that says what to
fix: a body too large (413, also when it arrives without a Content-Length), a content type we do not
read (415), JSON that does not parse (400), a body of the wrong shape (422), a schema that is not
valid JSON Schema (422 naming where in the schema), no texts, repeated ids (422), too many items (413).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from corral.errors import InputError, SchemaError
from corral.io.items import FORMATS, Format, read_items
from corral.schema import check_json_schema
from corral.serve.errors import ApiError
from corral.serve.jobs import Submission
from corral.serve.models import JOB_ID_PATTERN, JobRequest
from corral.types import Item

__all__ = ["check_schema", "read_submission"]

#: a body over the limit is still read (and dropped) up to this many times the limit, so that the
#: client, still sending, reads our 413 instead of a connection reset
_DRAIN_FACTOR = 8
_FORMATS: dict[str, Format] = {"jsonl": "jsonl", "csv": "csv", "txt": "txt"}
_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no", ""}


async def read_submission(request: Request, *, max_body: int, max_items: int) -> Submission:
    """The job a request asks for, checked; raises :class:`ApiError` for anything wrong."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    if not is_json and media != "multipart/form-data":
        shown = f"not {media}" if media else "but the request has no Content-Type"
        raise ApiError(
            415, "unsupported_media_type", f"send the job as application/json or multipart/form-data, {shown}"
        )
    seen = [0]
    capped = Request(request.scope, _capped(request.receive, max_body, seen))
    try:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            raise _too_large(max_body)
        if is_json:
            submission = _from_json(b"".join([chunk async for chunk in capped.stream()]))
        else:
            submission = await _from_form(capped, max_body)
    except ApiError as exc:
        if exc.status == 413 and "expect" not in request.headers:
            await _drain(request.receive, seen[0], max_body * _DRAIN_FACTOR)
        raise
    _check_items(submission.items, max_items)
    return submission


# --- JSON --------------------------------------------------------------------------------------


def _from_json(raw: bytes) -> Submission:
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty: send the job as a JSON object")
    try:
        body = JobRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    check_schema(body.schema_)
    if body.texts is not None:
        items = [Item(id=str(number), text=text) for number, text in enumerate(body.texts, start=1)]
        what = "texts"
    else:
        items = [Item(id=str(item.id), text=item.text) for item in body.items or []]
        what = "items"
    if not items:
        raise ApiError(422, "invalid_request", f"{what} is empty: send at least one text")
    return Submission(body.schema_, items, body.many, body.prompt, body.id, body.fresh)


def _invalid(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False)
    for error in errors:
        if error["type"] == "json_invalid":
            return ApiError(
                400, "invalid_json", f"the body is not valid JSON: {error['ctx'].get('error', '')}"
            )
    problems = []
    for error in errors[:8]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return ApiError(422, "invalid_request", "; ".join(problems))


# --- multipart ---------------------------------------------------------------------------------


async def _from_form(request: Request, max_body: int) -> Submission:
    # Two files at most: curl's "-F schema=@person.json" sends the schema as a file too.
    async with request.form(max_files=2, max_fields=16, max_part_size=max_body) as form:
        schema_part = form.get("schema")
        upload = form.get("file")
        if schema_part is None:
            raise ApiError(422, "invalid_request", "the form has no schema field (the JSON Schema, as text)")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "the form has no file field (a .jsonl, .csv or .txt file)")
        schema_text = schema_part if isinstance(schema_part, str) else await schema_part.read()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        data = await upload.read()
        filename = _shown_name(upload.filename)
    try:
        schema = orjson.loads(schema_text)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the schema field is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ApiError(
            422, "invalid_schema", f"the schema must be a JSON object, not {type(schema).__name__}"
        )
    check_schema(schema)
    job_id = fields.get("id") or None
    if job_id is not None and not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise ApiError(422, "invalid_request", f"id: {job_id!r} must match {JOB_ID_PATTERN}")
    named = fields.get("format") or FORMATS.get(Path(filename).suffix.lower()) or ""
    fmt = _FORMATS.get(named)
    if fmt is None:
        raise ApiError(
            422, "invalid_request", f"cannot tell the format of {filename!r}: name it .jsonl, .csv or .txt, "
            "or send a format field (jsonl, csv or txt)",
        )  # fmt: skip
    text_field = fields.get("text_field") or "text"
    id_field = fields.get("id_field") or "id"
    items = await asyncio.to_thread(_read_file, data, filename, fmt, text_field, id_field)
    return Submission(
        schema,
        items,
        many=_flag(fields, "many"),
        prompt=fields.get("prompt") or None,
        id=job_id,
        fresh=_flag(fields, "fresh"),
    )


def _read_file(data: bytes, filename: str, fmt: Format, text_field: str, id_field: str) -> list[Item]:
    """The items of an uploaded file, read by corral's own readers (a bad row is an item's error)."""
    with tempfile.TemporaryDirectory(prefix="corral-serve-") as folder:
        # Never the client's name on disk: "..", "", a NUL or 300 characters are all valid to send.
        path = Path(folder) / f"upload.{fmt}"
        path.write_bytes(data)
        try:
            items = list(read_items(path, format=fmt, text_field=text_field, id_field=id_field))
        except InputError as exc:
            message = str(exc).replace(str(path), filename)
            raise ApiError(
                422, "invalid_input", message.replace("pass --text-field", "send a text_field")
            ) from None
    # Row problems name the file as the reader saw it; the client knows it by its own name.
    return [
        dataclasses.replace(item, problem=item.problem.replace(str(path), filename)) if item.problem else item
        for item in items
    ]


def _shown_name(sent: str | None) -> str:
    """The upload's name as messages show it: its last part, printable, at most 100 characters."""
    name = (sent or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char if char.isprintable() else "?" for char in name)
    if len(name) > 100:
        name = name[:80] + "..." + name[-17:]  # the end holds the suffix that may name the format
    return name if name.strip(". ") else "upload"


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(422, "invalid_request", f"{name}: {value!r} is not true or false")


# --- checks ------------------------------------------------------------------------------------


def _check_items(items: list[Item], max_items: int) -> None:
    if len(items) > max_items:
        raise ApiError(
            413,
            "too_many_items",
            f"{len(items):,} items is more than this server takes in one job ({max_items:,}, --max-items): "
            "split it into several jobs",
        )
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ApiError(
                422, "invalid_request", f"item id {item.id!r} appears more than once: ids must be unique"
            )
        seen.add(item.id)


def check_schema(schema: dict[str, Any]) -> None:
    """A schema that is not valid JSON Schema, or refers outside itself, is the client's 422."""
    try:
        check_json_schema(schema, origin="the schema")
    except SchemaError as exc:
        raise ApiError(422, "invalid_schema", str(exc)) from None


# --- the size limit ----------------------------------------------------------------------------


def _capped(receive: Receive, limit: int, seen: list[int]) -> Receive:
    """``receive`` that refuses the body once it passes ``limit`` bytes, however it is sent."""

    async def capped() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise _too_large(limit)
        return message

    return capped


async def _drain(receive: Receive, seen: int, budget: int) -> None:
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the request body is larger than this server takes ({limit / 1e6:g} MB, --max-body-mb): "
        "split the job into several",
    )
