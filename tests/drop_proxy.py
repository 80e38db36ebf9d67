"""A TCP proxy in front of a gRPC server that loses one reply on demand, for the clients'
retry tests: the request reaches the server, which acts and answers, and the client never hears.

It forwards bytes both ways and reads the server's side as HTTP/2 frames (9-byte header: length,
type, flags, stream id). Armed, it loses the reply to the next call at its first DATA frame on a
stream (the response message, which exists only once the server's handler has run):
- "close": it closes both connections there (the client sees UNAVAILABLE);
- "swallow": it forwards nothing more from the server on that connection and keeps it open, so
  the client waits until its deadline (DEADLINE_EXCEEDED); the next bytes the client sends on it
  (its RST_STREAM or a retry) close it, and the client reconnects.
Only 127.0.0.1, a free port; close() stops every thread it started.
"""

from __future__ import annotations

import contextlib
import socket
import threading

HOST = "127.0.0.1"
DATA_FRAME = 0


class DropReplyProxy:
    def __init__(self, upstream_port: int):
        self.upstream = (HOST, upstream_port)
        self.listener = socket.create_server((HOST, 0))
        self.address = f"{HOST}:{self.listener.getsockname()[1]}"
        self.dropped = 0  # replies lost so far
        self._mode: str | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def arm(self, mode: str = "close") -> None:
        assert mode in ("close", "swallow")
        with self._lock:
            self._mode = mode

    def close(self) -> None:
        self._shut(self.listener)  # wakes the accept() (closing alone does not)
        self.listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(10)

    def __enter__(self) -> DropReplyProxy:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            muted = threading.Event()  # this connection's reply was swallowed
            self._start(self._requests, client, upstream, muted)
            self._start(self._replies, upstream, client, muted)

    @staticmethod
    def _shut(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _requests(self, source: socket.socket, target: socket.socket,
                  muted: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if muted.is_set():
                    return self._shut(source, target)
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def _replies(self, source: socket.socket, target: socket.socket,
                 muted: threading.Event) -> None:
        buffered = b""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if muted.is_set():
                    continue
                buffered += data
                while len(buffered) >= 9:
                    size = 9 + int.from_bytes(buffered[:3], "big")
                    if len(buffered) < size:
                        break
                    frame, buffered = buffered[:size], buffered[size:]
                    stream = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    with self._lock:
                        mode = self._mode if frame[3] == DATA_FRAME and stream else None
                        if mode is not None:
                            self._mode = None
                            self.dropped += 1
                    if mode == "close":
                        return self._shut(source, target)
                    if mode == "swallow":
                        muted.set()
                        break
                    target.sendall(frame)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
