"""Request bodies over API_MAX_BODY_BYTES are refused 413 before anything parses them.

FastAPI reads and parses a JSON body before it runs the route's dependencies, the key check
included, so without this any client could make the API buffer and parse a body of any size.

- A declared Content-Length over the limit is answered at once: the application is not
  called (no routing, no key check, no handler), nothing of the body is read, and
  `Expect: 100-continue` clients are never told to send it.
- A body without a length (chunked) is counted as it is received; the read that passes the
  limit raises, whatever the application answers to that is dropped, and the 413 is sent
  instead.

The 413 closes the connection (`Connection: close`), so that the server does not go on
reading the rest of the body to reach the next request. Plain ASGI: no buffering of its own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudpipe_api.errors import error_response


class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit."""


def declared_length(scope: Scope) -> int | None:
    """The Content-Length a request declares (the largest, if repeated); None without one.
    The HTTP server refuses malformed values itself; anything unreadable counts as none."""
    lengths = [value for name, value in scope["headers"] if name == b"content-length"]
    try:
        return max(int(value) for value in lengths) if lengths else None
    except ValueError:
        return None


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def checked_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's answer to the failed read; the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, checked_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            if started:  # an answer was already under way: cut the connection instead
                raise BodyTooLarge
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            {
                "error": "body_too_large",
                "detail": f"the request body is over {self.max_bytes} bytes "
                "(API_MAX_BODY_BYTES); send less per request, e.g. a smaller batch",
            },
            {"Connection": "close"},
        )
        await response(scope, receive, send)
