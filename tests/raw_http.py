"""HTTP/1.1 spoken by hand on a socket: for what a client library would not send, or would tidy up."""

from __future__ import annotations

import socket


def answers(address: tuple[str, int], request: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Sends raw bytes, reads until the server closes the connection; returns each answer.

    Each answer is (status, headers with lower-case names, body); every answer must carry a
    Content-Length, as all of this service's do.
    """
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(request)
        return read_answers(connection)


def read_answers(connection: socket.socket) -> list[tuple[int, dict[str, str], bytes]]:
    """Reads a connection until the server closes it; returns each answer, as `answers` does."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
        length = int(headers["content-length"])
        found.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return found
