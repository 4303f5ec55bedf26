"""One log line per unexpected failure: what failed and why, never a traceback at INFO.

An unexpected exception in a request handler is answered with a clean error (HTTP 500
ServerException / gRPC INTERNAL, naming a request id, not the exception text) and logged
here as one line; the traceback goes to DEBUG for whoever turns that on. A client that can
provoke exceptions cannot flood the log with stack traces.
"""

from __future__ import annotations

import logging


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """ERROR: `what` failed with the exception's type and first line; DEBUG: the traceback."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    log.error("%s failed: %s%s", what, type(exc).__name__, f": {text}" if text else "")
    log.debug("%s traceback", what, exc_info=exc)
