"""Keep-alive HTTP/1.1 GET requests over C connections (round robin: one
request in flight per connection, so up to C queued at the server): exactly N
of them for a fixed, reproducible recording, or as many as fit in --duration
seconds for a rate-bound run (then N is a cap, 0 for none).

Usage: keepalive_load.py HOST PORT PATH N C [--duration SECONDS]
HOST "unix:/path/to.sock" connects to a UNIX stream socket instead (PORT is
then ignored; Host: localhost).
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


def connect(host, port):
    if host.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(host[len("unix:"):])
        return s
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def main():
    args = sys.argv[1:]
    duration = None
    if "--duration" in args:
        i = args.index("--duration")
        duration = float(args[i + 1])
        del args[i:i + 2]
    host, port, path, n, c = args[0], int(args[1]), args[2], int(args[3]), int(args[4])
    if duration is not None and n <= 0:
        n = 1 << 62
    hosthdr = "localhost" if host.startswith("unix:") else f"{host}:{port}"
    req = f"GET {path} HTTP/1.1\r\nHost: {hosthdr}\r\n\r\n".encode()
    socks = [[connect(host, port), b""] for _ in range(c)]
    done = failed = 0
    t0 = time.monotonic()
    end = t0 + duration if duration is not None else None
    while done + failed < n and socks and (end is None or time.monotonic() < end):
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
    took = time.monotonic() - t0
    for s, _ in socks:
        s.close()
    print(f"requests={done}\nfailed={failed}\nseconds={took:.2f}")


if __name__ == "__main__":
    main()
