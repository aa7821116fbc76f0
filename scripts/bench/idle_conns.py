"""Open N keep-alive connections to an HTTP/1.1 server, send one request on
each, read its response, then hold them all open (idle) until SIGTERM/SIGINT
or --hold seconds have passed. Used by scripts/bench.sh to measure obsd's
memory with many idle tracked connections.

Usage: idle_conns.py HOST PORT PATH N STATUS_FILE [--hold SECONDS]
Writes opened=<n>, failed=<n>, seconds=<t> lines to STATUS_FILE once every
connection has been tried, then holds. Exits 0; bounded in count and time.
"""
import os
import resource
import signal
import socket
import sys
import time


def read_response(s):
    """Read one response with a Content-Length body; True if complete."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return False
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def main():
    args = sys.argv[1:]
    hold = 120.0
    if "--hold" in args:
        i = args.index("--hold")
        hold = float(args[i + 1])
        del args[i:i + 2]
    host, port, path, n, status_file = args[0], int(args[1]), args[2], int(args[3]), args[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
           "Connection: keep-alive\r\n\r\n").encode()
    socks, failed = [], 0
    t0 = time.monotonic()
    for _ in range(n):
        if stop:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect((host, port))
            s.sendall(req)
            if not read_response(s):
                raise OSError("bad or short response")
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    took = time.monotonic() - t0
    with open(status_file + ".tmp", "w") as f:
        f.write(f"opened={len(socks)}\nfailed={failed}\nseconds={took:.2f}\n")
    os.replace(status_file + ".tmp", status_file)

    deadline = time.monotonic() + hold
    while not stop and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
