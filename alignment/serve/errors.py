"""Every error of the API as OpenAI writes it: ``{"error": {"message", "type", "param", "code"}}``.

Handlers here turn FastAPI's validation errors (400, not 422: OpenAI's status for a bad parameter), Starlette's
404/405, our :class:`ApiError` and any other exception (500, a bug) into that JSON body, so no client ever
gets an HTML page or a framework-specific shape. The ``openai`` client maps the statuses to its exception
classes: 400 ``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 429 ``RateLimitError``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client: status, one-line message and OpenAI's ``type``/``param``/``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code, self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line and the parameter for pydantic's first error. A union field (``prompt: str | list[str]``)
    reports one error per member with the member in the path (``prompt.str``): only names are kept."""
    first = exc.errors()[0] if exc.errors() else {}
    kind = first.get("type")
    if kind == "json_invalid":
        return "the request body is not valid JSON", None
    loc = [p for p in first.get("loc", ()) if isinstance(p, str) and p != "body" and p.isidentifier()]
    loc = [p for p in loc if p not in ("str", "int", "list")]
    if not loc:
        return "the request body must be a JSON object", None
    param = ".".join(loc)
    if kind == "extra_forbidden":
        return f"unrecognized request argument supplied: {param}", param
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{param}: {message}", param


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message, code = f"no such route: {request.method} {request.url.path}", "not_found"
        elif exc.status_code == 405:
            message, code = f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return error_response(exc.status_code, message, code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, f"internal server error ({type(exc).__name__})", type="server_error")
