#!/usr/bin/env python3
"""One client, one keep-alive connection, N writes one after another; prints "P50 P99", in milliseconds.

Usage: sequential-writes.py tandem|etcd PORT N
  tandem: PUT /kv/k<i mod 1000> with a 256-byte body (the write of scripts/bench-writes.sh)
  etcd:   POST /v3/kv/put through etcd's HTTP/JSON gateway, the same key space and value (base64 on the wire)
Every answer must be 200, or the script stops with an error: a refused write is not a fast one.
"""
import base64
import http.client
import json
import sys
import time


def main():
    kind, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    value = b"v" * 256
    encoded_value = base64.b64encode(value).decode()
    latencies = []
    for i in range(count):
        key = b"k%d" % (i % 1000)
        if kind == "tandem":
            method, path, body = "PUT", "/kv/" + key.decode(), value
        else:
            method, path = "POST", "/v3/kv/put"
            body = json.dumps({"key": base64.b64encode(key).decode(), "value": encoded_value})
        start = time.perf_counter_ns()
        connection.request(method, path, body)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"{kind} on port {port}: write {i} answered {response.status}")
        latencies.append(time.perf_counter_ns() - start)
    latencies.sort()

    def at(q):
        return latencies[min(count - 1, int(count * q))] / 1e6

    print(f"{at(0.50):.2f} {at(0.99):.2f}")


if __name__ == "__main__":
    main()
