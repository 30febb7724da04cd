"""The endpoint's WSGI application: SageMaker operations here, every other service to moto.

A SageMaker request is an awsJson1_1 POST whose ``X-Amz-Target`` is
``SageMaker.<Operation>``; each operation the toolkit serves is validated against botocore's
input shape, answered by a handler, and cut to the output shape. Everything else (S3, STS,
IAM, CloudWatch Logs and metrics, and SageMaker operations the toolkit does not serve) goes
to moto's own dispatcher in this process, which routes by the SigV4 credential scope.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sm_toolkit.endpoint.errors import ServiceError
from sm_toolkit.endpoint.shapes import conform_output, validate_input
from sm_toolkit.endpoint.training import Caller

Handler = Callable[[dict, Caller], dict]
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_TARGET_PREFIX = "SageMaker."
log = logging.getLogger("sm_toolkit.endpoint")


def credential_scope(environ: dict) -> tuple[str | None, str | None]:
    """The (region, service) a SigV4-signed request names, or (None, None)."""
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (match.group(1), match.group(2)) if match else (None, None)


class EndpointApp:
    """Dispatch one request: ours by X-Amz-Target, the rest to ``fallback`` (moto)."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        fallback: WSGIApp,
        *,
        account: str,
        refuse_services: dict[str, str] | None = None,
    ) -> None:
        self.handlers = handlers
        self.fallback = fallback
        self.account = account
        # service name -> why this endpoint does not serve it (e.g. S3 under --s3 aws)
        self.refuse_services = refuse_services or {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        region, service = credential_scope(environ)
        if target.startswith(_TARGET_PREFIX) and target[len(_TARGET_PREFIX) :] in self.handlers:
            caller = Caller(region or "us-east-1", self.account)
            status, body = self._sagemaker(target[len(_TARGET_PREFIX) :], environ, caller)
            return _respond(start_response, status, body)
        if service in self.refuse_services:
            return _refuse(start_response, service, self.refuse_services[service])
        return self.fallback(environ, start_response)

    def _sagemaker(self, op: str, environ: dict, caller: Caller) -> tuple[int, dict]:
        try:
            params = _json_body(environ)
            validate_input(op, params)
            result = self.handlers[op](params, caller)
            return 200, conform_output(op, result)
        except ServiceError as exc:
            return exc.status, exc.body()
        except Exception:  # a bug of ours, not the client's: say so, keep serving
            log.error("SageMaker.%s failed:\n%s", op, traceback.format_exc())
            return 500, {
                "__type": "InternalFailure",
                "message": f"sm-toolkit endpoint failed on {op}; see its log",
            }


def _json_body(environ: dict) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise SerializationError("The request body is not valid JSON") from None


class SerializationError(ServiceError):
    """The body does not parse (the service's answer to malformed JSON)."""

    code = "SerializationException"
    status = 400


def _respond(start_response: Callable, status: int, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}[status]
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]


def _refuse(start_response: Callable, service: str, message: str) -> list[bytes]:
    """A 400 with ``message`` in the error format the service's clients parse (S3 reads
    XML; a JSON body would reach the user as a bare "400 Bad Request")."""
    from xml.sax.saxutils import escape

    import botocore.session

    protocol = botocore.session.get_session().get_service_model(service).metadata["protocol"]
    if protocol not in ("rest-xml", "query", "ec2"):
        return _respond(start_response, 400, {"__type": "InvalidRequest", "message": message})
    data = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRequest</Code>'
        f"<Message>{escape(message)}</Message></Error>"
    ).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]
