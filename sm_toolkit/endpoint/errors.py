"""The errors the SageMaker service returns, as the endpoint sends them.

Each is an HTTP status and an awsJson1_1 ``__type``; botocore turns them into the same
``ClientError`` codes that a real SageMaker endpoint produces.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal sent to the client as ``{"__type": ..., "message": ...}``."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON body of the error response."""
        return {"__type": self.code, "message": self.message}


class ValidationError(ServiceError):
    """The request does not satisfy the operation's input shape."""

    code = "ValidationException"
    status = 400


class ResourceInUse(ServiceError):
    """A job of that name exists already."""

    code = "ResourceInUse"
    status = 400


class ResourceNotFound(ServiceError):
    """No job of that name."""

    code = "ResourceNotFound"
    status = 400


class UnknownOperation(ServiceError):
    """The X-Amz-Target names no operation of the SageMaker model."""

    code = "UnknownOperationException"
    status = 400
