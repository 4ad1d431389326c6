#!/usr/bin/env python3
"""Sends exactly N GET requests over C keep-alive connections (each connection one request at a time) and waits
for every answer: a fixed amount of work, for counting what a proxy spends per request (see instructions.sh).
Usage: fixed-load.py HOST PORT PATH CONNECTIONS REQUESTS"""
import selectors
import socket
import sys

host, port, path, connections, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
request = ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode()
selector = selectors.DefaultSelector()
sent = answered = 0
state = {}


def send_next(sock):
    global sent
    if sent >= total:
        selector.unregister(sock)
        sock.close()
        return
    sent += 1
    sock.sendall(request)


for _ in range(min(connections, total)):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state[sock] = b""
    selector.register(sock, selectors.EVENT_READ)
    send_next(sock)

while answered < total:
    events = selector.select(timeout=60)
    if not events:
        sys.exit("no answer for 60 s after %d answers" % answered)
    for key, _ in events:
        sock = key.fileobj
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("connection closed by the proxy after %d answers" % answered)
        data = state[sock] + chunk
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                break
            head = data[:end].decode("latin-1").lower()
            if not head.startswith("http/1.1 200"):
                sys.exit("unexpected answer: %r" % head[:80])
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
            if len(data) < end + 4 + length:
                break
            data = data[end + 4 + length:]
            answered += 1
            send_next(sock)
        state[sock] = data
print(answered)
