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

# handshake (Fuzz/targets/HandshakeFuzz.swift): mode byte (bit 0 acceptor, bits 1-2 auth: 0 none, 1 secret,
# 2 TLS; bit 3 stand-ins), then frames [type u8][length u16][payload]. The target's node is n1 with a fixed nonce
# and this secret; honest proofs are HMAC-SHA256(secret, label | dialer nonce | acceptor nonce | sender is
# acceptor | sender id | sender incarnation), as in Handshake.swift. Hellos say version 2 with a secret, 1 otherwise.
import hashlib
import hmac

HELLO, PROOF, REFUSAL = 0x01, 0x02, 0x03
SECRET = b'fuzz-cluster-secret'
OUR_NONCE = bytes(0xA0 + i for i in range(32))
PEER_NONCE = bytes(range(0x10, 0x30))

def hs_frame(ftype, payload): return u8(ftype) + u16(len(payload)) + payload
def hello(node, mode, incarnation=5, nonce=PEER_NONCE, version=None, magic=b'TNDM'):
    version = version if version is not None else (2 if mode == 1 else 1)
    return magic + u16(version) + u8(mode) + u64(incarnation) + nonce + s(node)
def proof(sender, sender_is_acceptor, dialer_nonce, acceptor_nonce, secret=SECRET, incarnation=5):
    message = (b'tandem-peer-auth-v2' + dialer_nonce + acceptor_nonce + u8(1 if sender_is_acceptor else 0) + s(sender)
               + u64(incarnation))
    return hmac.new(secret, message, hashlib.sha256).digest()
def hs(mode, *frames): return u8(mode) + b''.join(hs_frame(t, p) for t, p in frames)

DIALER, ACCEPTOR = 0, 1
NONE, SECRET_MODE, TLS = 0 << 1, 1 << 1, 2 << 1
STAND_INS = 8
# Honest peers: as the dialer of n2 (the peer is the acceptor), and as an acceptor of n3 (the peer dialled).
honest_from_acceptor = proof('n2', True, OUR_NONCE, PEER_NONCE)
honest_from_dialer = proof('n3', False, PEER_NONCE, OUR_NONCE)
flipped = bytes([honest_from_dialer[0] ^ 0x01]) + honest_from_dialer[1:]
handshake = {
    'dialer-none': hs(DIALER | NONE, (HELLO, hello('n2', 0))),
    'acceptor-tls': hs(ACCEPTOR | TLS, (HELLO, hello('n3', 2))),
    'dialer-secret-honest': hs(DIALER | SECRET_MODE, (HELLO, hello('n2', 1)), (PROOF, honest_from_acceptor)),
    'acceptor-secret-honest': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)), (PROOF, honest_from_dialer)),
    'acceptor-secret-flipped-proof': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)), (PROOF, flipped)),
    'acceptor-secret-wrong-secret': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)),
                                       (PROOF, proof('n3', False, PEER_NONCE, OUR_NONCE, b'another secret'))),
    # Our own proof sent back: it binds our role and id, so it must not pass for the peer's.
    'acceptor-secret-reflected-proof': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)),
                                          (PROOF, proof('n1', True, PEER_NONCE, OUR_NONCE, incarnation=7))),
    'acceptor-secret-proof-for-another-id': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)),
                                               (PROOF, proof('n2', False, PEER_NONCE, OUR_NONCE))),
    'standin-acceptor-secret-honest': hs(ACCEPTOR | SECRET_MODE | STAND_INS, (HELLO, b'\x02'), (PROOF, b'\x00\x00')),
    'standin-dialer-secret-mutated': hs(DIALER | SECRET_MODE | STAND_INS, (HELLO, b'\x01'), (PROOF, b'\x07\x40')),
    'acceptor-stranger': hs(ACCEPTOR | NONE, (HELLO, hello('n4', 0))),
    'acceptor-self': hs(ACCEPTOR | NONE, (HELLO, hello('n1', 0))),
    'dialer-wrong-peer': hs(DIALER | TLS, (HELLO, hello('n3', 2))),
    'mode-mismatch': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 0))),
    'version-mismatch': hs(DIALER | NONE, (HELLO, hello('n2', 0, version=2))),
    'version-mismatch-secret': hs(DIALER | SECRET_MODE, (HELLO, hello('n2', 1, version=1))),
    'bad-magic': hs(DIALER | NONE, (HELLO, hello('n2', 0, magic=b'GET '))),
    'invalid-utf8-id': hs(ACCEPTOR | NONE, (HELLO, hello('n3', 0)[:-4] + u16(2) + b'\xff\xfe')),
    'second-hello': hs(ACCEPTOR | SECRET_MODE, (HELLO, hello('n3', 1)), (HELLO, hello('n3', 1))),
    'proof-before-hello': hs(DIALER | SECRET_MODE, (PROOF, honest_from_acceptor)),
    'refused': hs(DIALER | SECRET_MODE, (REFUSAL, b'wrong cluster secret')),
    'application-frame-first': hs(ACCEPTOR | NONE, (0x10, b'\x00' * 8)),
}
for name, data in handshake.items():
    write('handshake', name, data)
