"""An HTTPS proxy on loopback for tests (HTTP CONNECT tunnels only, as corporate proxies carry TLS): it
records the target of each tunnel, so a test can see that a client went through it."""

from __future__ import annotations

import select
import socket
import socketserver
import threading


class ConnectProxy:
    def __init__(self):
        self.tunnels: list[str] = []
        """host:port of every CONNECT, in order."""
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline(65536).decode("latin-1")
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers
                method, target, _ = [*line.split(), "", "", ""][:3]
                if method != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    return
                host, port = target.rsplit(":", 1)
                proxy.tunnels.append(target)
                with socket.create_connection((host, int(port)), timeout=30) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _pipe(self.connection, upstream)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConnectProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Carry bytes both ways until either side closes."""
    while True:
        ready, _, _ = select.select([one, other], [], [], 30)
        if not ready:
            return
        for source in ready:
            data = source.recv(65536)
            if not data:
                return
            (other if source is one else one).sendall(data)
