#!/usr/bin/env python3
"""One round of scripts/bench-failover.sh: with a client writing continuously through the surviving nodes, kill -9
the leader's tandem (by the PID it is given), then measure from the kill to a new leader in /status and to the first
acknowledged write sent after the kill.

The client is open-loop: it sends a new PUT every --interval-ms (a fresh connection each, at most --max-inflight at
once), alternating between the survivors, so a write stuck on the dead leader never delays the next one and the
resolution of the "first acknowledged write" figure is the interval, not a client timeout. The in-flight bound is
above what 100 writes a second can pile up within TANDEM_WRITE_TIMEOUT (5 s), so it never throttles the client.

Prints one line of JSON: msToLeader, msToAck, newLeader, newTerm, acked, failed (answers other than 200 and
transport errors, counted over the whole round), and the acknowledged keys go to --acked-out, one per line, so the
caller can check afterwards that every one of them is on every replica.
"""
import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time


def now_ns():
    return time.monotonic_ns()


class Writer:
    """Sends PUT /kv/<prefix>-<seq> on a fixed cadence from a bounded number of threads and records the outcomes."""

    def __init__(self, targets, prefix, interval_ms, timeout_s, max_inflight):
        self.targets = targets
        self.prefix = prefix
        self.interval_s = interval_ms / 1000
        self.timeout_s = timeout_s
        self.slots = threading.BoundedSemaphore(max_inflight)  # bounds the threads alive at once
        self.lock = threading.Lock()
        self.results = []  # (send_ns, ack_ns, key, status or error string); bounded by the round's duration
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join()

    def _run(self):
        seq = 0
        while not self.stopping.is_set():
            if self.slots.acquire(blocking=False):
                seq += 1
                threading.Thread(target=self._one, args=(seq,), daemon=True).start()
            time.sleep(self.interval_s)

    def _one(self, seq):
        host, port = self.targets[seq % len(self.targets)]
        key = f"{self.prefix}-{seq}"
        sent = now_ns()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            conn.request("PUT", f"/kv/{key}", body=b"f" * 64)
            status = conn.getresponse().status
            conn.close()
        except Exception as error:  # a refused or timed-out write is an outcome to count, not a crash
            status = type(error).__name__
        acked = now_ns()
        with self.lock:
            self.results.append((sent, acked, key, status))
        self.slots.release()


def status_of(admin_port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=0.5)
        conn.request("GET", "/status")
        body = conn.getresponse().read()
        conn.close()
        return json.loads(body)
    except Exception:
        return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--leader-pid", type=int, required=True)
    parser.add_argument("--leader-term", type=int, required=True)
    parser.add_argument("--survivor-clients", required=True, help="comma list of client ports of the survivors")
    parser.add_argument("--survivor-admins", required=True, help="comma list of admin ports of the survivors")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--acked-out", required=True)
    parser.add_argument("--steady-s", type=float, default=1.0, help="writing before the kill")
    parser.add_argument("--interval-ms", type=float, default=10)
    parser.add_argument("--timeout-s", type=float, default=6)
    parser.add_argument("--max-inflight", type=int, default=1000)
    parser.add_argument("--give-up-s", type=float, default=20)
    args = parser.parse_args()

    clients = [("127.0.0.1", int(p)) for p in args.survivor_clients.split(",")]
    admins = [int(p) for p in args.survivor_admins.split(",")]
    writer = Writer(clients, args.prefix, args.interval_ms, args.timeout_s, args.max_inflight)
    writer.start()
    time.sleep(args.steady_s)
    with writer.lock:
        before = sum(1 for r in writer.results if r[3] == 200)
    if before == 0:
        writer.stop()
        print(json.dumps({"error": "no write was acknowledged before the kill"}))
        return 1

    kill_ns = now_ns()
    os.kill(args.leader_pid, signal.SIGKILL)

    leader_ns, new_leader, new_term = None, None, None
    deadline = kill_ns + int(args.give_up_s * 1e9)
    while leader_ns is None and now_ns() < deadline:
        for port in admins:
            status = status_of(port)
            if status and status.get("role") == "leader" and int(status.get("term", 0)) > args.leader_term:
                leader_ns, new_leader, new_term = now_ns(), status.get("id"), status.get("term")
                break
        else:
            time.sleep(0.005)

    ack_ns = None
    while ack_ns is None and now_ns() < deadline:
        with writer.lock:
            after = [r[1] for r in writer.results if r[0] > kill_ns and r[3] == 200]
        if after:
            ack_ns = min(after)
        else:
            time.sleep(0.005)
    time.sleep(0.3)  # let writes already in flight finish, so the acked list is as complete as it can be
    writer.stop()
    time.sleep(min(args.timeout_s, 1.0))

    with writer.lock:
        results = list(writer.results)
    with open(args.acked_out, "a") as out:
        for _, _, key, status in results:
            if status == 200:
                out.write(key + "\n")
    print(json.dumps({
        "msToLeader": None if leader_ns is None else round((leader_ns - kill_ns) / 1e6),
        "msToAck": None if ack_ns is None else round((ack_ns - kill_ns) / 1e6),
        "newLeader": new_leader,
        "newTerm": new_term,
        "acked": sum(1 for r in results if r[3] == 200),
        "failed": sum(1 for r in results if r[3] != 200),
        "failures": sorted({str(r[3]) for r in results if r[3] != 200}),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
