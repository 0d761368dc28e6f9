"""FetchTransport: httpx over the browser's fetch, for Pyodide (which has no sockets).

`httpx.AsyncClient(transport=FetchTransport())` then works as anywhere else. A rejected
fetch (offline, DNS, connection refused, CORS) becomes `httpx.ConnectError`; httpx's
timeouts are enforced with an AbortController (`httpx.ReadTimeout`); the body is streamed
from the ReadableStream reader, so `client.stream(...)` reads Server-Sent Events as they come.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

# Set by the browser itself; fetch ignores or refuses them.
_BROWSER_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding",
                              "user-agent"})
# fetch has already decoded the body: httpx must not decode it again.
_DECODED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _deadline(timeout: float | None) -> asyncio.Timeout:
    """httpx's read timeout as an asyncio deadline; httpx's None (and 0) mean none."""
    return asyncio.timeout(timeout or None)


class _ReaderStream(httpx.AsyncByteStream):
    def __init__(self, reader: Any, controller: Any, read_timeout: float | None,
                 request: httpx.Request) -> None:
        self._reader = reader
        self._controller = controller
        self._timeout = read_timeout
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        from pyodide.ffi import JsException

        while True:
            try:
                async with _deadline(self._timeout):
                    result = await self._reader.read()
            except TimeoutError:
                self._controller.abort()
                raise httpx.ReadTimeout("no data from the server in time",
                                        request=self._request) from None
            except JsException as e:
                raise httpx.ReadError(str(e), request=self._request) from None
            if result.done:
                return
            yield result.value.to_bytes()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._controller.abort()  # ends the body and the connection; nothing to await
            self._reader = None


class FetchTransport(httpx.AsyncBaseTransport):
    """An httpx transport over `fetch`. `credentials` is fetch's option (cookies)."""

    def __init__(self, credentials: str = "same-origin") -> None:
        self.credentials = credentials

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import js
        from pyodide.ffi import JsException, to_js

        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        controller = js.AbortController.new()
        init: dict[str, Any] = {
            "method": request.method,
            "headers": [[k, v] for k, v in request.headers.items()
                        if k.lower() not in _BROWSER_HEADERS],
            "signal": controller.signal, "credentials": self.credentials, "cache": "no-store",
        }
        if body:
            buffer = js.Uint8Array.new(len(body))
            buffer.assign(body)
            init["body"] = buffer
        options = to_js(init, dict_converter=js.Object.fromEntries)
        try:
            async with _deadline(timeout.get("read")):
                response = await js.fetch(str(request.url), options)
        except TimeoutError:
            controller.abort()
            raise httpx.ReadTimeout("no answer from the server in time",
                                    request=request) from None
        except JsException as e:
            raise httpx.ConnectError(str(e), request=request) from None
        # One crossing of the bridge for all the headers.
        pairs = json.loads(js.JSON.stringify(getattr(js.Array, "from")(response.headers)))
        headers = [(k, v) for k, v in pairs if k.lower() not in _DECODED_HEADERS]
        status = int(response.status)
        # No body (204, HEAD) is JS null, which Pyodide passes as `jsnull`, not None.
        reader = response.body.getReader() if js.Boolean(response.body) else None
        if reader is None:
            return httpx.Response(status, headers=headers, content=b"", request=request)
        stream = _ReaderStream(reader, controller, timeout.get("read"), request)
        return httpx.Response(status, headers=headers, stream=stream, request=request)
