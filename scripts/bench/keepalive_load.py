"""Exactly N keep-alive HTTP/1.1 GET requests over C connections (round robin:
one request in flight per connection), for a fixed, reproducible recording.

Usage: keepalive_load.py HOST PORT PATH N C
Prints "requests=<n> failed=<n> seconds=<t>" lines. Bounded in count and time.
"""
import socket
import sys
import time


def read_response(s, pending):
    """Read one Content-Length response from s; returns leftover bytes."""
    buf = pending
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        rest += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError("status " + head.split(b"\r\n")[0].decode(errors="replace"))
    return rest[length:]


def main():
    host, port, path, n, c = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    socks = []
    for _ in range(c):
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append([s, b""])
    done = failed = 0
    t0 = time.monotonic()
    while done + failed < n and socks:
        batch = socks[:n - done - failed]
        for s, _ in batch:
            s.sendall(req)
        for entry in batch:
            try:
                entry[1] = read_response(entry[0], entry[1])
                done += 1
            except OSError:
                failed += 1
                entry[0].close()
                socks.remove(entry)
    for s, _ in socks:
        s.close()
    print(f"requests={done}\nfailed={failed}\nseconds={time.monotonic() - t0:.2f}")


if __name__ == "__main__":
    main()
