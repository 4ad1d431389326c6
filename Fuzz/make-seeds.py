#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target under Fuzz/corpus/<target>/ (layouts: ConsensusCodec.swift,
FrameParser.swift, WriteCommand.swift). Run from the repository root; the output is committed."""
import os
import struct

def u8(v): return struct.pack('<B', v)
def u16(v): return struct.pack('<H', v)
def u32(v): return struct.pack('<I', v)
def u64(v): return struct.pack('<Q', v)
def i64(v): return struct.pack('<q', v)
def s(t): b = t.encode(); return u16(len(b)) + b
def blob(b): return u32(len(b)) + b
def common(f, t, term): return s(f) + s(t) + u64(term)

def entry(term, index, data=b'', proposal=None, kind=1, time=1_700_000_000_000):
    p = u8(1) + s(proposal[0]) + u64(proposal[1]) if proposal else u8(0)
    return u64(term) + u64(index) + u8(kind) + i64(time) + p + blob(data)

codec = {
    'prevote-request': (0x10, common('n2', 'n1', 4) + u64(7) + u64(3) + u8(0)),
    'prevote-response': (0x11, common('n2', 'n1', 2) + u8(1)),
    'vote-request': (0x12, common('n2', 'n1', 4) + u64(7) + u64(3) + u8(1)),
    'vote-response': (0x13, common('n2', 'n1', 1) + u8(1)),
    'append': (0x14, common('n2', 'n1', 2) + u64(0) + u64(0) + u64(1) + u32(3)
               + entry(1, 1, kind=0) + entry(2, 2, b'\x01POST', ('n2', 9)) + entry(2, 3, b'x' * 40, ('n3', 1))),
    'append-empty': (0x14, common('n2', 'n1', 1) + u64(1) + u64(1) + u64(1) + u32(0)),
    'append-response': (0x15, common('n2', 'n1', 1) + u8(1) + u64(1) + u64(0) + u64(0) + u64(0)),
    'append-refusal': (0x15, common('n2', 'n1', 1) + u8(0) + u64(0) + u64(5) + u64(2) + u64(1)),
    'heartbeat': (0x16, common('n2', 'n1', 3) + u64(2) + u64(17)),
    'heartbeat-response': (0x17, common('n2', 'n1', 1) + u64(1)),
    'timeout-now': (0x18, common('n2', 'n1', 1)),
    'forward': (0x19, common('n2', 'n1', 1) + u32(2) + s('n2') + u64(1) + blob(b'PUT') + s('n2') + u64(2) + blob(b'')),
    'forward-response': (0x1A, common('n2', 'n1', 1) + u32(2) + s('n1') + u64(1) + u8(0) + u64(4) + u64(1)
                         + s('n1') + u64(2) + u8(1) + u8(1)),
    'read-request': (0x1B, common('n2', 'n1', 1) + u8(1) + u32(2) + s('n2') + u64(1) + s('n2') + u64(2)),
    'read-response': (0x1C, common('n2', 'n1', 1) + u32(2) + s('n1') + u64(1) + u8(0) + u64(3)
                      + s('n1') + u64(2) + u8(1) + u8(3)),
}

def write(target, name, data):
    os.makedirs(f'Fuzz/corpus/{target}', exist_ok=True)
    with open(f'Fuzz/corpus/{target}/{name}', 'wb') as f: f.write(data)

for name, (ftype, payload) in codec.items():
    write('consensus-codec', name, bytes([ftype]) + payload)

def frame(ftype, payload): return u32(len(payload)) + u8(ftype) + payload
stream = b''.join(frame(t, p) for t, p in list(codec.values())[:6])
for mode, name in [(0x04, 'large-limit-whole'), (0x1B, 'medium-limit-pieces'), (0x00, 'zero-limit')]:
    write('frame-parser', name, bytes([mode]) + stream)
write('frame-parser', 'oversized', bytes([0x02]) + u32(100) + u8(0x10) + b'z' * 20)

def command(method, target, fields, body):
    out = u8(1) + u16(len(method)) + method.encode() + u32(len(target)) + target.encode() + u16(len(fields))
    for n, v in fields:
        out += u16(len(n)) + n.encode() + u32(len(v.encode())) + v.encode()
    return out + u32(len(body)) + body

write('write-command', 'post', command('POST', '/items', [('Content-Type', 'application/json')], b'{"a":1}'))
write('write-command', 'put-keyed', command('PUT', '/k/1?x=y', [('Idempotency-Key', 'abc'), ('X-Forwarded-For', '10.0.0.1')], b'v'))
write('write-command', 'delete-empty', command('DELETE', '/k/1', [], b''))
write('write-command', 'bad-name', command('POST', '/k', [('Bad Name', 'v')], b''))
write('write-command', 'bad-value', command('POST', '/k', [('X-A', 'v\r\nX: 1')], b''))

write('http-parser', 'get', b'\x00GET /a HTTP/1.1\r\nHost: h\r\n\r\n')
write('http-parser', 'chunked', b'\x06POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n')
write('http-parser', 'response', b'\x80HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
