"""The HTTP face of ``corral serve``: routes, auth, error bodies, streams and the web page.

    POST   /v1/jobs                  submit a job (JSON or multipart); its results stream back
    GET    /v1/jobs/{id}             status, counts, settings
    GET    /v1/jobs/{id}/results     every result so far from the store, then live until the job ends
    DELETE /v1/jobs/{id}             cancel a running job (its finished results are kept)
    GET    /healthz                  liveness, no auth
    GET    /                         the web page (static, no auth)
    GET    /openapi.json             this description

Results stream as NDJSON (``application/x-ndjson``, the default: one record per line, exactly what
``corral run`` writes) or as server-sent events (``Accept: text/event-stream``: ``job``, then a
``result`` per record whose ``id:`` is a cursor that ``Last-Event-ID`` resumes after, then ``end``).
An NDJSON stream of a job that did not finish ends with one ``{"error": {...}}`` line saying why.

Every refusal is ``{"error": {"type", "message"}}`` with a 4xx (corral's own errors are translated
here). With tokens set every ``/v1`` route needs ``Authorization: Bearer <token>``, and the token
names the client: a client's jobs are its own (another's id is a 404). Without one the
server is bound to loopback and answers only requests addressed to loopback names, so a web page
elsewhere cannot reach it through the user's browser (DNS rebinding). Cross-origin requests are
refused either way: a form on another site must not spend the user's API budget.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures' annotations at run time.

import contextlib
import hmac
import importlib.resources
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from corral import __version__
from corral.backends import is_loopback
from corral.errors import CorralError, StoreError, UsageError
from corral.serve.errors import ApiError
from corral.serve.jobs import Job, JobManager, Page
from corral.serve.models import JOB_ID_PATTERN, ErrorBody, Health, JobRequest, JobStatus, Record
from corral.serve.submit import read_submission

__all__ = ["NDJSON", "SSE", "ServeSettings", "create_app"]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
#: seconds between SSE comments on an idle stream, so that proxies do not cut it
_KEEPALIVE_S = 15.0
_PAGE_FILES = {"/": ("index.html", "text/html"), "/page.js": ("page.js", "text/javascript"),
               "/page.css": ("page.css", "text/css")}  # fmt: skip
#: the page loads nothing from anywhere else, and says so to the browser
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# "no-cache", not "no-store": Chromium reports a no-store response read through a stream reader as
# aborted (net::ERR_ABORTED) although every byte arrived.
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "the body (or the schema field) is not valid JSON, or a multipart body is malformed",
        401: "a token is set and the request does not carry it",
        402: "the server has spent what it may (--max-total-cost)",
        403: "a cross-origin request, or one addressed to a non-loopback name without a token set",
        409: "the job is running, or was created with other settings",
        413: "the body or the number of items is over the server's limit",
        415: "neither application/json nor multipart/form-data",
        422: "a body of the wrong shape, a schema that is not valid JSON Schema (the message says where), "
        "no texts, repeated ids",
        429: "the server runs --max-jobs jobs already (see Retry-After)",
    }.items()
}
_DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""

log = logging.getLogger("corral.serve")


class NDJSONResponse(StreamingResponse):
    media_type = NDJSON


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What the command line decides about the HTTP side."""

    #: the bearer tokens clients may send, each to the name of its client ("" for the one client of
    #: $CORRAL_SERVE_TOKEN); none: no token, loopback only
    clients: Mapping[str, str] = field(default_factory=dict)
    max_body: int = 10_000_000
    max_items: int = 100_000


def create_app(manager: JobManager, settings: ServeSettings) -> FastAPI:
    """The app serving ``manager``'s jobs. Its lifespan ends every job when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.aclose()

    app = FastAPI(
        title="corral serve",
        version=__version__,
        summary="Validated, typed records from texts with a language model, streamed as they complete.",
        description=_DESCRIPTION,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: this server works offline
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    client = _bearer(settings.clients) if settings.clients else _nobody
    guards = [Depends(_same_origin(loopback_only=not settings.clients)), Depends(client)]
    api = APIRouter(prefix="/v1", dependencies=guards, responses={401: _ERRORS[401], 403: _ERRORS[403]})
    _add_job_routes(api, manager, settings, Annotated[str, Depends(client)])
    app.include_router(api)
    _add_page_routes(app, manager)
    _add_error_handlers(app)
    _use_full_openapi(app)
    return app


# --- routes ------------------------------------------------------------------------------------


def _add_job_routes(api: APIRouter, manager: JobManager, settings: ServeSettings, Owner: Any) -> None:
    # Owner: the client's name, from its token (a dependency). Every job route is scoped by it.
    stream_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "model": Record,
            "description": f"the results as they complete: `{NDJSON}` (one record per line; a last "
            f'`{{"error": ...}}` line if the job did not finish) or `{SSE}` (events `job`, `result` '
            "with a cursor `id:`, `end`)",
            "content": {SSE: {"schema": {"type": "string"}}},
            "headers": {
                "X-Corral-Job": {"description": "the job id", "schema": {"type": "string"}},
                "Location": {"description": "the job's status", "schema": {"type": "string"}},
            },
        }
    }

    @api.post(
        "/jobs",
        summary="Submit a job; its results stream back as they complete",
        description="A JSON body (`JobRequest`), or `multipart/form-data` with a `schema` field (the JSON "
        "Schema as text) and a `file` (.jsonl, .csv or .txt; optional fields `many`, `prompt`, `id`, "
        "`fresh`, `text_field`, `id_field`, `format`). The job runs on the server: a client that "
        "disconnects loses nothing, and fetches the results again from `GET /v1/jobs/{id}/results`. "
        "Posting an `id` again resumes its job: finished items come from the store, the rest are "
        "extracted.",
        response_class=NDJSONResponse,
        responses={**stream_responses, **{k: v for k, v in _ERRORS.items() if k not in (401, 403)}},
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def create_job(request: Request, owner: Owner) -> StreamingResponse:
        submission = await read_submission(request, max_body=settings.max_body, max_items=settings.max_items)
        job = await manager.start(submission, owner)
        only = {item.id for item in submission.items}
        return _stream(
            request,
            manager,
            owner=owner,
            job_id=job.id,
            store_id=job.store_id,
            job=job,
            only=only,
            after=None,
        )

    @api.get(
        "/jobs/{job_id}",
        summary="A job's status, counts and settings",
        response_model=JobStatus,
        responses={404: {"model": ErrorBody, "description": "no such job"}},
    )
    async def job_status(job_id: str, owner: Owner) -> dict[str, Any]:
        return manager.status(job_id, owner)

    @api.get(
        "/jobs/{job_id}/results",
        summary="Every result of a job so far, then the rest as they complete",
        description="From the store, in completion order (results of earlier runs first), then live "
        "while the job runs; after a server restart too. With SSE, `Last-Event-ID` (or `after`) "
        "continues after the last event received.",
        response_class=NDJSONResponse,
        responses={**stream_responses, 404: {"model": ErrorBody, "description": "no such job"}},
    )
    async def job_results(
        job_id: str,
        request: Request,
        owner: Owner,
        last_event_id: Annotated[str | None, Header(description="SSE: continue after this event")] = None,
        after: Annotated[
            int | None, Query(description="continue after this cursor (an SSE event id)")
        ] = None,
    ) -> StreamingResponse:
        store_id, job = manager.find(job_id, owner)
        cursor = after
        if last_event_id is not None and last_event_id.strip().isdigit():
            cursor = int(last_event_id.strip())
        if cursor is not None and not 0 <= cursor <= _MAX_CURSOR:
            # SQLite's integers end at 2^63 - 1: a larger cursor failed mid-stream with OverflowError.
            raise ApiError(422, "invalid_cursor", f"a cursor is a result's event id, 0 to {_MAX_CURSOR}")
        return _stream(
            request, manager, owner=owner, job_id=job_id, store_id=store_id, job=job, only=None, after=cursor
        )

    @api.delete(
        "/jobs/{job_id}",
        summary="Cancel a running job (its finished results are kept)",
        response_model=JobStatus,
        responses={
            404: {"model": ErrorBody, "description": "no such job"},
            409: {"model": ErrorBody, "description": "the job is not running"},
        },
    )
    async def cancel_job(job_id: str, owner: Owner) -> dict[str, Any]:
        return await manager.cancel(job_id, owner)


def _add_page_routes(app: FastAPI, manager: JobManager) -> None:
    page = importlib.resources.files("corral.serve") / "page"
    for path, (name, media) in _PAGE_FILES.items():
        app.add_api_route(
            path, _static((page / name).read_bytes(), media), methods=["GET"], include_in_schema=False
        )

    @app.get("/healthz", summary="Liveness (no auth)", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "running_jobs": manager.running}


def _static(body: bytes, media: str) -> Callable[[], Response]:
    # A closure, not default arguments: FastAPI would take those for query parameters, and answer
    # "/?body=..." with whatever the query says.
    def serve_file() -> Response:
        return Response(body, media_type=media, headers=_PAGE_HEADERS)

    return serve_file


# --- streams -----------------------------------------------------------------------------------


def _stream(
    request: Request,
    manager: JobManager,
    *,
    owner: str,
    job_id: str,
    store_id: int,
    job: Job | None,
    only: set[str] | None,
    after: int | None,
) -> StreamingResponse:
    sse = SSE in request.headers.get("accept", "").lower()
    pages = manager.follow(store_id, job, after=after, only=only, heartbeat=_KEEPALIVE_S if sse else None)
    body = _sse(manager, owner, job_id, job, pages) if sse else _ndjson(manager, owner, job_id, pages)
    headers = {**_STREAM_HEADERS, "X-Corral-Job": job_id, "Location": f"/v1/jobs/{job_id}"}
    return StreamingResponse(body, media_type=SSE if sse else NDJSON, headers=headers)


async def _ndjson(
    manager: JobManager, owner: str, job_id: str, pages: AsyncIterator[Page]
) -> AsyncIterator[bytes]:
    async for page in pages:
        yield b"".join([record + b"\n" for _, record in page])
    problem = manager.unfinished(job_id, owner)
    if problem is not None:
        yield orjson.dumps({"error": problem}) + b"\n"


async def _sse(
    manager: JobManager, owner: str, job_id: str, job: Job | None, pages: AsyncIterator[Page]
) -> AsyncIterator[bytes]:
    head = {
        "id": job_id,
        "total": job.total if job is not None else None,
        "results": f"/v1/jobs/{job_id}/results",
    }
    yield _event("job", head)
    delivered = 0
    async for page in pages:
        if not page:
            yield b": keep-alive\n\n"
            continue
        delivered += len(page)
        yield b"".join([b"id: %d\nevent: result\ndata: %b\n\n" % (cursor, record) for cursor, record in page])
    yield _event("end", {**manager.status(job_id, owner), "delivered": delivered})


def _event(name: str, data: object) -> bytes:
    return b"event: %b\ndata: %b\n\n" % (name.encode(), orjson.dumps(data))


# --- auth and origin ---------------------------------------------------------------------------


async def _nobody() -> str:
    """No token is set: the server is loopback only, and all its jobs are one client's."""
    return ""


def _bearer(clients: Mapping[str, str]) -> Callable[..., Awaitable[str]]:
    known = [(token.encode(), name) for token, name in clients.items()]
    scheme = HTTPBearer(auto_error=False, description="a token the server was given")

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> str:
        if credentials is None:
            raise ApiError(
                401, "unauthorized", "this server needs the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        sent = credentials.credentials.encode()
        # Constant time, and every token compared: how much of a guess matched, or which token it
        # came close to, must not show in how long the answer takes.
        owner = None
        for token, name in known:
            if hmac.compare_digest(sent, token):
                owner = name
        if owner is None:
            raise ApiError(
                401, "unauthorized", "the bearer token is not this server's",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )  # fmt: skip
        return owner

    return require_token


def _same_origin(*, loopback_only: bool) -> Callable[[Request], Awaitable[None]]:
    async def same_origin(request: Request) -> None:
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        # Scheme and host and port, as browsers compare origins: https://name is another origin
        # than http://name (what this server speaks).
        if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
            raise ApiError(
                403, "forbidden", "cross-origin requests are refused (this server sends no CORS headers)"
            )
        if loopback_only and not is_loopback(_host_name(host)):
            raise ApiError(
                403, "forbidden", "this server has no token, so it answers only requests for localhost, "
                f"not {host!r}; set a token to serve other names",
            )  # fmt: skip

    return same_origin


#: a Host header: a name or an IPv4 address, or an IPv6 one in brackets, and an optional port.
#: Nothing else: "evil.example@127.0.0.1" would parse as a URL whose host is loopback.
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port; "" when it is not a plain host[:port]."""
    match = _HOST.fullmatch(host)
    return match["name"] if match else ""


# --- errors ------------------------------------------------------------------------------------


#: the largest cursor there can be (SQLite's rowids are signed 64-bit integers)
_MAX_CURSOR = 2**63 - 1


def _error(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:8]
        ]
        return _error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        message = (
            exc.detail if exc.status_code != 404 else f"no such route: {request.method} {request.url.path}"
        )
        return _error(exc.status_code, kinds.get(exc.status_code, "http_error"), str(message), exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client left while sending its body (or stalled past --body-timeout): nobody reads an
        # answer, nothing was started, and it is not the server's error to log.
        return Response(status_code=400)

    @app.exception_handler(CorralError)
    async def corral_error(request: Request, exc: CorralError) -> JSONResponse:
        # Anything corral raised that no route turned into an ApiError: the store failing is ours to
        # fix (500, detail in the log, not the answer), the rest is a problem with what was asked.
        if isinstance(exc, StoreError) or not isinstance(exc, UsageError):
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return _error(500, exc.kind, "the server failed to answer; its log says why")
        return _error(422, exc.kind, str(exc))


# --- OpenAPI -----------------------------------------------------------------------------------

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["schema", "file"],
                "properties": {
                    "schema": {"type": "string", "description": "the JSON Schema, as JSON text"},
                    "file": {"type": "string", "format": "binary", "description": ".jsonl, .csv or .txt"},
                    "many": {"type": "boolean"},
                    "prompt": {"type": "string"},
                    "id": {"type": "string", "pattern": JOB_ID_PATTERN},
                    "fresh": {"type": "boolean"},
                    "text_field": {"type": "string", "default": "text"},
                    "id_field": {"type": "string", "default": "id"},
                    "format": {"type": "string", "enum": ["jsonl", "csv", "txt"]},
                },
            }
        },
    },
}


def _use_full_openapi(app: FastAPI) -> None:
    """FastAPI describes bodies it parses itself; this one is read by hand (JSON or multipart, with
    our limits), so its models are added to the document here."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            body = JobRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas["JobRequest"] = body
            _tidy(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _tidy(document: dict[str, Any]) -> None:
    """Say what the service really answers: errors are JSON ``ErrorBody`` (FastAPI files them under
    a streaming route's media type, and describes 422 in its own validation shape), and an NDJSON
    line is a ``Record`` (not a string, as FastAPI assumes of a streamed response)."""
    schemas = document["components"]["schemas"]
    refused = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                content = response.get("content", {})
                if status != "200" and NDJSON in content:
                    content["application/json"] = content.pop(NDJSON)
            if "HTTPValidationError" in orjson.dumps(responses.get("422", {})).decode():
                responses["422"] = {
                    "description": "a parameter or body of the wrong shape",
                    "content": {"application/json": {"schema": refused}},
                }
            ndjson = responses.get("200", {}).get("content", {}).get(NDJSON, {})
            if "$ref" in ndjson.get("schema", {}):
                ndjson["schema"] = {"$ref": ndjson["schema"]["$ref"]}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
