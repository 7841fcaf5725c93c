"""Serving an ASGI app on a socket of this machine (the job server and the sample API): uvicorn
on a listener bound before the URL is printed, with a deadline for a request's headers, which
uvicorn lacks."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import sys

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0          # seconds a request's headers may take (the job server's default)


class HeaderTimedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers, which uvicorn lacks: its
    keep-alive timer runs only between requests and stops at the first byte, so a client that
    connects and sends nothing, or trickles a header line, held the connection for ever. The
    deadline runs whenever the connection waits for a request's headers (from the connection
    or the previous answer) and stops once h11 has them all. h11 is chosen over httptools for
    its bound on headers still incomplete (16 KiB). Its own errors answer one line of JSON."""

    def __init__(self, *args, header_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.watch_headers()

    def handle_events(self) -> None:
        super().handle_events()
        self.watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_header_timer()
        super().connection_lost(exc)

    def watch_headers(self) -> None:
        """Run the header deadline while h11 waits for a request (the client's state is IDLE
        until a request's headers are complete), stop it otherwise."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self.stop_header_timer()
        elif self.header_timer is None:
            self.header_timer = self.loop.call_later(self.header_timeout, self.headers_late)

    def stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def headers_late(self) -> None:
        """Close the connection; a 408 first if part of a request came."""
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            self.answer_and_close(408, f"the request's headers did not arrive within "
                                       f"{self.header_timeout:g} s")
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this while handling h11's error, whose reason and status (431 for
        headers over the bound) say more than uvicorn's message."""
        error = sys.exc_info()[1]
        self.answer_and_close(getattr(error, "error_status_hint", 400),
                              f"invalid HTTP request: {error or msg}")

    def answer_and_close(self, status: int, detail: str) -> None:
        """An answer before (or instead of) a request: h11 lets a server answer from IDLE."""
        body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
        events = [h11.Response(status_code=status, headers=[
                      ("content-type", "application/json"), ("content-length", str(len(body))),
                      ("connection", "close")]),
                  h11.Data(data=body), h11.EndOfMessage()]
        try:
            self.transport.write(b"".join(self.conn.send(event) for event in events))
        except h11.LocalProtocolError:      # an answer already begun: closing is all that is left
            pass
        self.transport.close()


def listen(app, host: str, port: int, label: str, notes: tuple[str, ...] = (), *,
           header_timeout: float = HEADER_TIMEOUT) -> None:
    """Serve ``app`` until interrupted; port 0 takes a free one. The first line printed names
    the URL, ``notes`` follow. A request's headers must arrive within ``header_timeout``
    seconds."""
    import uvicorn  # on first use: start-up stays light

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)         # before the URL is printed: a client that reads it and
    #                               connects at once is queued, not refused (uvicorn accepts)
    print(f"{label} on http://{host}:{listener.getsockname()[1]}", flush=True)
    for note in notes:
        print(note, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ws="none",               # no route speaks it: one protocol less
                            http=functools.partial(HeaderTimedH11,
                                                   header_timeout=header_timeout))
    uvicorn.Server(config).run(sockets=[listener])
