#!/usr/bin/env python3
"""Differential test of Tandem's HTTP request parsing against haproxy and nginx (docs/HTTP-DIFFERENTIAL.md).

Every case of Tests/Differential/corpus.txt is sent as raw bytes to Tandem, haproxy and nginx, each a reverse proxy
in front of its own recording origin. A proxy's verdict is what its origin saw (the complete requests, with their
method and de-chunked body) and what the client got back. The run fails when Tandem forwards a request that
neither reference forwards, or forwards a request whose method or body differs from what a reference that also
forwarded it saw (two proxies disagreeing on where a message ends is exactly a desync), unless the case is in
Tests/Differential/allowlist.txt with a reason. Being stricter (rejecting what a reference forwards) never fails.

Usage: scripts/http-differential.py [TANDEM_BINARY] [--corpus FILE] [--allowlist FILE] [--lanes N] [--only NAME]
       [--verbose]. The binary defaults to $TANDEM_BIN. Exit status: 0 no failing disagreement, 1 a failing
       disagreement or a broken `expect` pin, 2 the harness could not run (a proxy missing or not starting).

Python 3 standard library only. Every process it starts is stopped by its PID on exit, also on failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXIES = ("tandem", "haproxy", "nginx")
REFERENCES = ("haproxy", "nginx")

# Waiting for "nothing more will happen" cannot be a condition: a proxy that keeps a connection open after its
# last response, or that waits for bytes that never come, looks the same as a slow one. These bound it.
# Guessing too short cannot go unnoticed: an origin event that arrives after its case was judged is reported as a
# harness error (exit status 2) instead of being counted for the next case.
RESPONSE_QUIET_S = 0.5  # after a complete response, this long without a byte means no further response
MAX_WAIT_S = 3.0  # a proxy that neither answers nor closes within this is waiting for more bytes
ORIGIN_QUIET_S = 0.2  # after the client closed, this long without origin activity means the case is over
PAUSE_S = 0.05  # between the segments of a case with `pause`
BYTEWISE_PAUSE_S = 0.002  # between the bytes of a `bytewise` case
ORIGIN_BODY = b"origin-ok\n"


class HarnessError(Exception):
    """The harness itself could not run (exit status 2); distinct from a failing comparison."""


# ----------------------------------------------------------------------------------------------------------------
# Corpus and allowlist.


@dataclass
class Case:
    name: str
    klass: str = ""
    note: str = ""
    segments: list[bytes] = field(default_factory=lambda: [b""])  # sent as separate writes, PAUSE_S apart
    bytewise: bool = False  # every byte is its own write
    pins: list[tuple[str, str]] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.segments)

    def writes(self) -> list[bytes]:
        if self.bytewise:
            return [bytes([b]) for b in self.data]
        return self.segments


def decode_escapes(text: str, where: str) -> bytes:
    """Turns the corpus's escaped text (\\r \\n \\t \\0 \\\\ \\xHH) into bytes; any other backslash is an error."""
    out = bytearray()
    i = 0
    simple = {"r": 13, "n": 10, "t": 9, "0": 0, "\\": 92}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "x" and len(text) >= i + 4:
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            raise ValueError(f"{where}: unknown escape {text[i:i + 4]!r}")
    return bytes(out)


def load_corpus(path: Path) -> list[Case]:
    cases: list[Case] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        if not raw.strip() or raw.startswith("#"):
            continue
        keyword, _, rest = raw.partition(" ")
        if keyword == "case":
            if any(c.name == rest for c in cases):
                raise ValueError(f"{where}: duplicate case {rest}")
            cases.append(Case(rest))
            continue
        if not cases:
            raise ValueError(f"{where}: {keyword} before the first case")
        case = cases[-1]
        if keyword == "class":
            case.klass = rest
        elif keyword == "note":
            case.note = rest
        elif keyword == "send":
            case.segments[-1] += decode_escapes(rest, where)
        elif keyword == "pause" and not rest:
            case.segments.append(b"")
        elif keyword == "bytewise" and not rest:
            case.bytewise = True
        elif keyword == "expect":
            who, _, what = rest.partition(" ")
            known = what in ("rejected", "forwarded") or what.startswith("forwarded:")
            if who not in PROXIES + ("all",) or not known:
                raise ValueError(f"{where}: bad pin {rest!r}")
            case.pins.append((who, what))
        else:
            raise ValueError(f"{where}: unknown keyword {keyword!r}")
    for case in cases:
        if not all(case.segments):
            raise ValueError(f"case {case.name} sends nothing (or pauses before sending, or pauses twice)")
    return cases


def load_allowlist(path: Path) -> dict[str, str]:
    """`case-name reason...` per line; `#` starts a comment line. A reason is required."""
    allowed: dict[str, str] = {}
    if not path.exists():
        return allowed
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        name, _, reason = raw.strip().partition(" ")
        if not reason.strip():
            raise ValueError(f"{path.name}:{number}: allowlisted case {name} has no reason")
        allowed[name] = reason.strip()
    return allowed


# ----------------------------------------------------------------------------------------------------------------
# The recording origin: logs every byte per connection, splits the stream into requests, answers 200 to each.


@dataclass
class OriginRequest:
    method: bytes
    target: bytes
    body: bytes


class RequestStreamParser:
    """Splits what a proxy sends into requests. Proxies re-frame what they forward (Content-Length or chunked), so
    this only needs to be correct for well-formed input; anything else ends the connection as `garbage`."""

    def __init__(self) -> None:
        self.buffer = b""
        self.sent_continue = False
        self.partial_reported = False  # the unparsed bytes were already counted as a partial request

    def next_request(self) -> tuple[OriginRequest | None, bool, bool] | None:
        """(request, close_after, False) for a complete request at the front; (None, close_after, True) when an
        incomplete one waits for `100 Continue`; None when more bytes are needed."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        lines = self.buffer[:head_end].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise ValueError(f"bad request line {lines[0][:60]!r}")
        method, target, version = parts
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError(f"bad field line {line[:60]!r}")
            headers.append((name.strip().lower(), value.strip()))
        values = lambda n: [v for k, v in headers if k == n]  # noqa: E731
        connection = b",".join(values(b"connection")).lower()
        close = b"close" in connection or (version == b"HTTP/1.0" and b"keep-alive" not in connection)
        te = b",".join(values(b"transfer-encoding")).lower()
        wants_continue = not self.sent_continue and b"100-continue" in b"".join(values(b"expect")).lower()
        rest = self.buffer[head_end + 4 :]
        if te:
            decoded = dechunk(rest)
            if decoded is None:
                return (None, close, True) if wants_continue else None
            body, used = decoded
        else:
            lengths = values(b"content-length")
            length = int(lengths[0]) if lengths else 0
            if len(rest) < length:
                return (None, close, True) if wants_continue else None
            body, used = rest[:length], length
        self.buffer = rest[used:]
        self.sent_continue = False
        self.partial_reported = False
        return OriginRequest(method, target, body), close, False


def dechunk(data: bytes) -> tuple[bytes, int] | None:
    """Decodes a chunked body at the front of `data`: (body, bytes used), or None when incomplete."""
    body = bytearray()
    pos = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(data[pos:line_end].split(b";")[0].strip(), 16)
        pos = line_end + 2
        if size == 0:
            while True:  # trailer section
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return bytes(body), line_end + 2
                pos = line_end + 2
        if len(data) < pos + size + 2:
            return None
        body += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        pos += size + 2


class Origin:
    """One recording origin on 127.0.0.1:<ephemeral>. Events are appended in arrival order; a case reads the ones
    after the mark it took before sending."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.lock = threading.Lock()
        self.events: list[tuple[str, object]] = []  # ("request", OriginRequest) | ("partial"|"garbage", bytes)
        self.raw: list[tuple[int, bytes]] = []  # (connection number, bytes) as received, for --verbose
        self.last_activity = time.monotonic()
        self.connections = 0
        self.claimed = 0  # events up to here belong to a judged case
        self.parsers: dict[int, RequestStreamParser] = {}  # open connections
        self.late: list[str] = []  # cases that had events arrive after they were judged
        self.last_case = "(before the first case)"
        origin = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                origin.serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"origin-{label}", daemon=True
        ).start()

    def record(self, kind: str, item: object) -> None:
        with self.lock:
            self.events.append((kind, item))
            self.last_activity = time.monotonic()

    def serve(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            number = self.connections
        parser = RequestStreamParser()
        with self.lock:
            self.parsers[number] = parser
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.raw.append((number, data))
                    self.last_activity = time.monotonic()
                parser.buffer += data
                while True:
                    try:
                        found = parser.next_request()
                    except ValueError:
                        self.record("garbage", parser.buffer)
                        parser.buffer = b""
                        return
                    if found is None:
                        break
                    request, close, wants_continue = found
                    if request is None:
                        if wants_continue:
                            parser.sent_continue = True
                            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                        break
                    self.record("request", request)
                    sock.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                        % (len(ORIGIN_BODY), b"Connection: close\r\n" if close else b"", ORIGIN_BODY)
                    )
                    if close:
                        return
        except OSError:
            pass
        finally:
            with self.lock:
                del self.parsers[number]
            if parser.buffer and not parser.partial_reported:
                self.record("partial", parser.buffer)
            sock.close()

    def mark(self) -> int:
        with self.lock:
            return len(self.events)

    def since(self, mark: int) -> list[tuple[str, object]]:
        with self.lock:
            return list(self.events[mark:])

    def claim(self, case: str) -> list[tuple[str, object]]:
        """Takes the events since the last claim for `case`; the next claim checks that none arrived late."""
        with self.lock:
            events = self.events[self.claimed :]
            # A request a proxy began to forward and then abandoned may stay open at the origin for a while; it is
            # this case's, so it is counted now rather than when the proxy gets round to closing the connection.
            for parser in self.parsers.values():
                if parser.buffer and not parser.partial_reported:
                    parser.partial_reported = True
                    events.append(("partial", parser.buffer))
            self.claimed = len(self.events)
            self.last_case = case
            return list(events)

    def check_nothing_late(self) -> None:
        with self.lock:
            if len(self.events) != self.claimed:
                self.late.append(self.last_case)
                self.claimed = len(self.events)

    def quiet_for(self) -> float:
        with self.lock:
            return time.monotonic() - self.last_activity

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------------------------------------------
# Client side: send a case, read whatever comes back.


def parse_responses(data: bytes, at_eof: bool) -> tuple[list[int], bool]:
    """Statuses of the responses in `data` (1xx included) and whether the last one is complete."""
    statuses: list[int] = []
    pos = 0
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return statuses, False
        lines = data[pos:head_end].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ")[1])
        except (IndexError, ValueError):
            return statuses + [0], True  # not HTTP: count it as an answer and stop parsing
        statuses.append(status)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        pos = head_end + 4
        if 100 <= status < 200 or status in (204, 304):
            continue
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            try:
                decoded = dechunk(data[pos:])
            except ValueError:
                return statuses, True
            if decoded is None:
                return statuses, False
            pos += decoded[1]
        elif b"content-length" in headers:
            length = int(headers[b"content-length"])
            if len(data) < pos + length:
                return statuses, False
            pos += length
        else:
            return statuses, at_eof  # delimited by close
    return statuses, True


@dataclass
class Outcome:
    forwarded: list[OriginRequest]
    partial: int
    garbage: int
    statuses: list[int]
    closed: bool  # the proxy closed (or reset) the connection
    waiting: bool  # it neither answered in full nor closed: it waits for bytes that never come

    @property
    def final_statuses(self) -> list[int]:
        return [s for s in self.statuses if not 100 <= s < 200]

    @property
    def rejected(self) -> bool:
        return not self.forwarded

    def summary(self) -> str:
        errors = [s for s in self.final_statuses if s >= 400 or s == 0]
        if self.forwarded:
            bodies = ",".join(str(len(r.body)) for r in self.forwarded)
            text = f"fwd{len(self.forwarded)}[{bodies}]"
            if errors:
                text += f"+{errors[0]}"
            elif self.waiting:
                text += "+wait"
        elif errors:
            text = f"rej {errors[0]}"
        elif self.waiting:
            text = "wait"
        elif self.closed:
            text = "closed"
        else:
            text = "answer " + ",".join(map(str, self.final_statuses))
        if self.partial:
            text += " p"
        if self.garbage:
            text += " g"
        return text


def run_one(port: int, origin: Origin, case: Case) -> Outcome:
    origin.check_nothing_late()
    mark = origin.mark()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    received = b""
    closed = False
    complete = False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for index, write in enumerate(case.writes()):
                if index:
                    time.sleep(BYTEWISE_PAUSE_S if case.bytewise else PAUSE_S)  # pacing, so the proxy reads apart
                sock.sendall(write)
        except OSError:
            pass  # the proxy closed early (after an error, typically): its answer may still be there to read
        start = last_byte = time.monotonic()
        sock.setblocking(False)
        while not closed:
            now = time.monotonic()
            if now - start >= MAX_WAIT_S:
                break
            if complete and now - last_byte >= RESPONSE_QUIET_S:
                # Do not stop while the origin has answered more requests than the client has seen answers for.
                seen = sum(1 for kind, _ in origin.since(mark) if kind == "request")
                finals = [s for s in parse_responses(received, False)[0] if not 100 <= s < 200]
                if seen <= len(finals):
                    break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if not readable:
                continue
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except BlockingIOError:
                continue
            if not chunk:
                closed = True
                break
            received += chunk
            last_byte = time.monotonic()
            statuses, complete = parse_responses(received, False)
            complete = complete and any(not 100 <= s < 200 for s in statuses)
    finally:
        sock.close()
    # Closing the client may make a proxy abort what it forwarded in part; let the origin see that too.
    deadline = time.monotonic() + MAX_WAIT_S
    while origin.quiet_for() < ORIGIN_QUIET_S and time.monotonic() < deadline:
        time.sleep(0.02)
    statuses, complete = parse_responses(received, closed)
    events = origin.claim(case.name)
    return Outcome(
        forwarded=[item for kind, item in events if kind == "request"],  # type: ignore[misc]
        partial=sum(1 for kind, _ in events if kind == "partial"),
        garbage=sum(1 for kind, _ in events if kind == "garbage"),
        statuses=statuses,
        closed=closed,
        waiting=not closed and not (complete and any(not 100 <= s < 200 for s in statuses)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Judging.


def judge(outcomes: dict[str, Outcome]) -> tuple[bool, str]:
    """(fails, explanation). Fails when Tandem forwards a request neither reference forwards, or a request whose
    method or body differs from the request at the same position in a reference that forwarded it."""
    tandem = [(r.method, r.body) for r in outcomes["tandem"].forwarded]
    problems = []
    for name in REFERENCES:
        ref = [(r.method, r.body) for r in outcomes[name].forwarded]
        for index, (mine, theirs) in enumerate(zip(tandem, ref)):
            if mine != theirs:
                problems.append(f"request {index + 1}: tandem {mine!r} but {name} {theirs!r}")
                break
    most = max(len(outcomes[name].forwarded) for name in REFERENCES)
    if len(tandem) > most:
        problems.append(f"tandem forwarded {len(tandem)} request(s); haproxy and nginx at most {most}")
    if problems:
        return True, "; ".join(problems)
    if len(tandem) < most:
        return False, "stricter"
    if any(len(outcomes[name].forwarded) != len(tandem) for name in REFERENCES):
        return False, "agrees with one reference"
    return False, "agree"


def check_pins(case: Case, outcomes: dict[str, Outcome]) -> list[str]:
    broken = []
    for who, what in case.pins:
        for name in PROXIES if who == "all" else (who,):
            count = len(outcomes[name].forwarded)
            if what == "rejected":
                ok = count == 0
            elif what == "forwarded":
                ok = count > 0
            else:
                ok = count == int(what.split(":")[1])
            if not ok:
                broken.append(f"expected {name} {what}, got {outcomes[name].summary()}")
    return broken


def self_check() -> None:
    """The judge must be able to fail: feed it the verdicts it exists to catch."""

    def out(*bodies: bytes, method: bytes = b"POST") -> Outcome:
        return Outcome([OriginRequest(method, b"/", b) for b in bodies], 0, 0, [200], False, False)

    rejected = Outcome([], 0, 0, [400], True, False)
    assert judge({"tandem": out(b"x"), "haproxy": rejected, "nginx": rejected})[0], "lenient not caught"
    assert judge({"tandem": out(b"", b""), "haproxy": out(b"0\r\n\r\nX"), "nginx": rejected})[0], "desync not caught"
    assert judge({"tandem": out(b"ab"), "haproxy": out(b"abc"), "nginx": out(b"abc")})[0], "body not compared"
    assert judge({"tandem": out(b"a", b"b"), "haproxy": out(b"a"), "nginx": out(b"a")})[0], "extra not caught"
    assert not judge({"tandem": rejected, "haproxy": out(b"x"), "nginx": out(b"x")})[0], "stricter failed"
    assert not judge({"tandem": out(b"a"), "haproxy": out(b"a", b"b"), "nginx": rejected})[0], "prefix failed"
    assert not judge({"tandem": out(b"x"), "haproxy": out(b"x"), "nginx": rejected})[0], "one reference failed"


# ----------------------------------------------------------------------------------------------------------------
# Processes.


class Processes:
    """Every process the run starts, stopped by PID (TERM, then KILL) whatever way the run ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.started.append(proc)
        return proc

    def stop(self, procs: list[subprocess.Popen]) -> None:
        """TERM to every one at once, then KILL those still running 5 s later."""
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        try:
            self.stop(self.started)
        except Exception as error:
            print(f"http-differential: could not stop {[p.pid for p in self.started]}: {error}", file=sys.stderr)


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise HarnessError(f"{what} (exit status {proc.poll() if proc else None})\n{tail}")


def which(tool: str) -> str | None:
    """Debian installs both references in /usr/sbin, which is not on every user's PATH."""
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin")


def version(tool: str) -> str:
    """The first line of `<tool> -v` (nginx prints it on stderr): the references' behaviour depends on it."""
    done = subprocess.run([which(tool), "-v"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else f"{tool} (version unknown)"


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def free_random_ports(count: int) -> list[int]:
    """Ports in 20000-32000 that nobody listens on right now (haproxy and nginx cannot bind port 0 and report it)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 32000)
        if port in ports:
            continue
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            probe.close()
    return ports


def start_with_ports(start, count: int, name: str) -> list[int]:
    """Starts a reference proxy on random ports, retrying when a port was taken between the check and the bind."""
    for _ in range(5):
        ports = free_random_ports(count)
        proc, log = start(ports)
        try:
            wait_until(lambda: all(can_connect(p) for p in ports), 10, f"{name} did not listen", proc, log)
            if proc.poll() is None:
                return ports
        except HarnessError:
            pass
        processes.stop([proc])
    raise HarnessError(f"{name} could not bind free ports after 5 attempts; see {log}")


def start_haproxy(work: Path, origins: list[Origin]) -> list[int]:
    def start(ports: list[int]):
        lines = [
            "global",
            "    maxconn 512",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 10s",
            "    timeout server 10s",
            "    timeout http-request 10s",
        ]
        for lane, (port, origin) in enumerate(zip(ports, origins)):
            lines += [
                f"frontend fe{lane}",
                f"    bind 127.0.0.1:{port}",
                f"    default_backend be{lane}",
                f"backend be{lane}",
                f"    server origin{lane} 127.0.0.1:{origin.port}",
            ]
        config = work / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        log = work / "haproxy.log"
        return processes.start([which("haproxy"), "-db", "-f", str(config)], log), log

    return start_with_ports(start, len(origins), "haproxy")


def start_nginx(work: Path, origins: list[Origin]) -> list[int]:
    def start(ports: list[int]):
        prefix = work / "nginx"
        prefix.mkdir(exist_ok=True)
        servers = "".join(
            f"  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{origin.port}; }} }}\n"
            for port, origin in zip(ports, origins)
        )
        temps = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))
        config = prefix / "nginx.conf"
        # One process (no master, no workers): stopping its PID stops all of nginx.
        config.write_text(
            "daemon off;\nmaster_process off;\n"
            f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  {temps}\n{servers}}}\n"
        )
        log = work / "nginx.log"
        args = [which("nginx"), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
        return processes.start(args, log), prefix / "error.log"

    return start_with_ports(start, len(origins), "nginx")


def start_tandem(binary: str, work: Path, lane: int, origin: Origin) -> tuple[int, subprocess.Popen, Path, int]:
    """Starts a single-node Tandem in front of `origin`; returns (client port, process, log, admin port)."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("TANDEM_"):
            del env[key]
    data = work / f"tandem{lane}-data"
    env.update(
        TANDEM_NODE_ID="n1",
        TANDEM_DATA_DIR=str(data),
        TANDEM_LISTEN="127.0.0.1:0",
        TANDEM_ADMIN_LISTEN="127.0.0.1:0",
        TANDEM_PEER_LISTEN="127.0.0.1:0",
        TANDEM_UPSTREAM=f"127.0.0.1:{origin.port}",
        TANDEM_LOG_FORMAT="json",
    )
    log = work / f"tandem{lane}.log"
    proc = processes.start([binary], log, env)

    def listening():
        for line in log.read_text(errors="replace").splitlines():
            if '"msg":"listening"' in line:
                return json.loads(line)
        return None

    line = wait_until(listening, 20, "tandem did not log listening", proc, log)
    client = int(line["client"].rsplit(":", 1)[1])
    admin = int(line["admin"].rsplit(":", 1)[1])
    return client, proc, log, admin


def ready(admin: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
        conn.request("GET", "/readyz")
        status = conn.getresponse().status
        conn.close()
        return status == 200
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------------------
# Main.

processes = Processes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tandem", nargs="?", default=os.environ.get("TANDEM_BIN"), help="the tandem binary")
    parser.add_argument("--corpus", type=Path, default=ROOT / "Tests/Differential/corpus.txt")
    parser.add_argument("--allowlist", type=Path, default=ROOT / "Tests/Differential/allowlist.txt")
    parser.add_argument("--lanes", type=int, default=4, help="cases run this many at a time (one Tandem each)")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print the requests each origin saw, for every case where the proxies differ")
    args = parser.parse_args()
    if not args.tandem or not os.access(args.tandem, os.X_OK):
        raise HarnessError("give the tandem binary as the first argument or in TANDEM_BIN")
    for tool in ("haproxy", "nginx"):
        if not which(tool):
            raise HarnessError(f"{tool} is not installed (scripts/ensure-deps.sh installs it)")
    self_check()
    cases = load_corpus(args.corpus)
    allowed = load_allowlist(args.allowlist)
    if args.only:
        cases = [c for c in cases if c.name in args.only]
    started_at = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tandem-differential-"))
    origins: dict[str, list[Origin]] = {}
    try:
        lanes = max(1, min(args.lanes, len(cases)))
        origins = {name: [Origin(f"{name}{lane}") for lane in range(lanes)] for name in PROXIES}
        tandems = [start_tandem(args.tandem, work, lane, origins["tandem"][lane]) for lane in range(lanes)]
        ports = {
            "tandem": [t[0] for t in tandems],
            "haproxy": start_haproxy(work, origins["haproxy"]),
            "nginx": start_nginx(work, origins["nginx"]),
        }
        for client, proc, log, admin in tandems:
            wait_until(lambda: ready(admin), 60, "tandem /readyz did not turn 200", proc, log)
        setup_s = time.monotonic() - started_at
        print(f"references: {version('haproxy')}; {version('nginx')}; {len(cases)} cases in {lanes} lanes")

        results: dict[str, dict[str, Outcome]] = {}
        pending: queue.Queue[Case] = queue.Queue()
        for case in cases:
            pending.put(case)
        errors: list[BaseException] = []

        stopping = threading.Event()  # set when the run ends early, so that no lane starts another case

        def run_proxy(name: str, lane: int, case: Case, outcome: dict[str, Outcome | BaseException]) -> None:
            try:
                outcome[name] = run_one(ports[name][lane], origins[name][lane], case)
            except BaseException as error:
                outcome[name] = error

        def lane_worker(lane: int) -> None:
            try:
                while not stopping.is_set():
                    try:
                        case = pending.get_nowait()
                    except queue.Empty:
                        return
                    outcome: dict[str, Outcome | BaseException] = {}
                    # Daemon threads throughout: a run stopped by a signal must not wait for cases in flight.
                    threads = [
                        threading.Thread(target=run_proxy, args=(name, lane, case, outcome), daemon=True)
                        for name in PROXIES
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                    for name in PROXIES:
                        if not isinstance(outcome.get(name), Outcome):
                            raise HarnessError(f"case {case.name} through {name}: {outcome.get(name)!r}")
                    results[case.name] = outcome
            except BaseException as error:
                errors.append(error)
                stopping.set()

        workers = [threading.Thread(target=lane_worker, args=(lane,), daemon=True) for lane in range(lanes)]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        finally:
            stopping.set()
        if errors:
            raise errors[0]
        for _, proc, log, _ in tandems:
            if proc.poll() is not None:
                raise HarnessError(f"tandem exited during the run (status {proc.returncode}); see {log}")
        time.sleep(ORIGIN_QUIET_S)  # the last cases' stragglers, if any, must be seen to be reported
        all_origins = [origin for group in origins.values() for origin in group]
        for origin in all_origins:
            origin.check_nothing_late()
        late = [f"{origin.label} after {case}" for origin in all_origins for case in origin.late]
        if late:
            raise HarnessError(
                "origin events arrived after their case was judged (a proxy slower than the quiet windows), so "
                "the verdicts are not trustworthy: " + ", ".join(sorted(set(late)))
            )
        return report(cases, results, allowed, args.verbose, setup_s, time.monotonic() - started_at)
    finally:
        processes.stop_all()
        for group in origins.values():
            for origin in group:
                origin.close()
        if os.environ.get("KEEP_LOGS"):
            print(f"http-differential: logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(cases, results, allowed, verbose, setup_s, total_s) -> int:
    width = max(len(c.name) for c in cases)
    header = f"{'case':<{width}}  {'tandem':<16} {'haproxy':<16} {'nginx':<16} result"
    print(header)
    print("-" * len(header))
    failing: list[str] = []
    disagreements: list[str] = []
    used_allowances = set()
    for case in cases:
        outcome = results[case.name]
        fails, why = judge(outcome)
        pins = check_pins(case, outcome)
        if fails and case.name in allowed:
            used_allowances.add(case.name)
            result = f"allowed: {why} ({allowed[case.name]})"
        elif fails:
            result = f"FAIL: {why}"
            failing.append(case.name)
        else:
            result = why
        if pins:
            result += " | PIN BROKEN: " + "; ".join(pins)
            if case.name not in failing:
                failing.append(case.name)
        verdicts = {name: outcome[name].summary() for name in PROXIES}
        if len({"rejected" if outcome[n].rejected else "forwarded" for n in PROXIES}) > 1 or fails:
            disagreements.append(case.name)
        columns = " ".join(f"{verdicts[name]:<16}" for name in PROXIES)
        print(f"{case.name:<{width}}  {columns} {result}")
        if verbose and (fails or pins or why != "agree"):
            for name in PROXIES:
                for request in outcome[name].forwarded:
                    print(f"    {name}: {request.method!r} {request.target!r} body={request.body!r}")
    for name in sorted(set(allowed) - used_allowances):
        print(f"note: allowlist entry {name} matched no failing case (remove it if the behaviour changed)")
    print(
        f"\n{len(cases)} cases, {len(disagreements)} with a forward/reject disagreement, {len(failing)} failing; "
        f"setup {setup_s:.1f} s, total {total_s:.1f} s"
    )
    print("legend: fwdN[body lengths] = N complete requests reached the origin; rej S = nothing forwarded, status S;")
    print("        +S = an error status after the forwarded ones; wait = no answer, still open; p = partial request")
    if failing:
        print("FAILED: " + ", ".join(failing))
        return 1
    return 0


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        sys.exit(main())
    except HarnessError as error:
        print(f"http-differential: {error}", file=sys.stderr)
        sys.exit(2)
