"""Built-in task types for cluster-style work: ``python_eval`` (a bounded, safe expression),
``http_request`` (an HTTP call whose connection errors and 5xx answers are retried)."""

from __future__ import annotations

import json as jsonlib
import urllib.error
import urllib.request
from typing import Any

from specflow.builder.registry import register
from specflow.flow import safe_eval
from specflow.flow.core import TaskableOperation
from specflow.flow.task import Task, TransientErrorCondition

MAX_BODY = 1 << 20


def _eval_fn(expression: str, variables: dict[str, Any] | None = None) -> Any:
    return safe_eval.evaluate(expression, variables)


_eval = TaskableOperation(_eval_fn, operation_name="python_eval")


@register("python_eval")
def python_eval(expression: str, variables: dict[str, Any] | None = None) -> Task:
    """A task that evaluates a Python expression safely: literals, arithmetic, comparisons,
    boolean logic, comprehensions and pure built-ins (sum, min, max, len, range, abs, round,
    sorted, ...); no attributes, imports or dunder names. Checked when the spec is built."""
    try:
        safe_eval.check(expression, (variables or {}).keys())
    except safe_eval.UnsafeExpression as exc:
        raise ValueError(f"python_eval refuses {expression!r}: {exc}") from None
    return _eval.make_task(expression=expression, variables=dict(variables or {}))


class HttpServerError(ConnectionError):
    """The server answered 5xx: worth retrying."""


def _http_fn(url: str, method: str = "GET", headers: dict[str, str] | None = None,
             body: str | None = None, json: Any = None, timeout: float = 30.0) -> dict[str, Any]:
    data: bytes | None = None
    hdrs = dict(headers or {})
    if json is not None:
        data = jsonlib.dumps(json).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif body is not None:
        data = body.encode()
    req = urllib.request.Request(url, data=data, method=method.upper(), headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the spec's URL
            status = resp.status
            got_headers = dict(resp.headers.items())
            raw = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise HttpServerError(f"{method.upper()} {url}: server error {exc.code}") from None
        status = exc.code
        got_headers = dict(exc.headers.items()) if exc.headers else {}
        raw = exc.read(MAX_BODY + 1)
    except urllib.error.URLError as exc:
        raise ConnectionError(f"{method.upper()} {url}: {exc.reason}") from None
    except TimeoutError:
        raise ConnectionError(f"{method.upper()} {url}: timed out after {timeout:g} s") from None
    text = raw[:MAX_BODY].decode("utf-8", errors="replace")
    return {"status": status, "headers": got_headers, "body": text}


_http = TaskableOperation(
    _http_fn, operation_name="http_request",
    transient=[TransientErrorCondition("ConnectionError")],
)


@register("http_request")
def http_request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
                 body: str | None = None, json: Any = None, timeout: float = 30.0) -> Task:
    """A task that makes one HTTP request and returns ``{status, headers, body}``; connection
    errors and 5xx answers are retried as transient."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    if body is not None and json is not None:
        raise ValueError("give body or json, not both")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    return _http.make_task(url=url, method=method, headers=dict(headers or {}), body=body,
                           json=json, timeout=timeout)
