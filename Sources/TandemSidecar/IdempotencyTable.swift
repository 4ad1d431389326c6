import TandemHTTP

/// The replicated dedupe table of `Idempotency-Key`.
///
/// Which entries are applied and which are answered from the table is a function of the log alone: keys, request
/// fingerprints, entry indexes and log time (for the TTL), with eviction by TTL and by count in log order. So every
/// replica makes the same decisions, and a restarted node rebuilds the decisions by reading its log again
/// (`rebuild`). The stored *responses* are this node's app's answers: they are kept in memory, saved by a
/// graceful stop (`encodedResponses`) and restored at start. A response that is gone (evicted by the byte bound,
/// or lost in a crash) is answered with 409 `idempotency_response_unavailable`; the write is still not applied
/// twice. Replayed answers never enter the divergence digest, so a missing response cannot look like divergence.
struct IdempotencyTable {
    struct Record {
        var fingerprint: UInt64
        /// The log index of the entry that was applied for this key.
        var index: UInt64
        var expiresAtMs: Int64
        var response: AppliedResponse?
    }

    /// The longest key a client may send (longer ones are refused with 400 before they reach the log).
    static let keyBytesMax = 256
    let ttlMs: Int64
    /// Hard cap on remembered keys; beyond it the oldest are forgotten early (documented in the README).
    let capacity: Int
    /// Cap on the bytes of stored responses; beyond it the oldest responses are dropped (their keys stay).
    let responseBytesMax: Int
    private var records: [String: Record] = [:]
    /// Keys in the order they were recorded; log time never decreases, so expiry is first-in, first-out.
    private var order: [(key: String, expiresAtMs: Int64)] = []
    private var orderHead = 0
    /// The oldest position in `order` whose response may still be stored.
    private var responseHead = 0
    private(set) var responseBytes = 0

    init(ttlMs: Int64, capacity: Int = 200_000, responseBytesMax: Int = 64 << 20) {
        self.ttlMs = ttlMs
        self.capacity = capacity
        self.responseBytesMax = responseBytesMax
    }

    var count: Int { records.count }

    static func key(of command: WriteCommand) -> String? {
        guard let key = command.headers.first(name: "Idempotency-Key"), !key.isEmpty else { return nil }
        return key
    }

    /// The answer for an entry whose key was seen before (replay, or 422 for a different request), or nil when
    /// the entry must be applied.
    mutating func check(command: WriteCommand, timeMs: Int64) -> AppliedResponse? {
        expire(before: timeMs)
        guard let key = Self.key(of: command), let record = records[key] else { return nil }
        guard record.fingerprint == Self.fingerprint(command) else {
            return Applier.tandemAnswer(
                422, "idempotency_key_reused", "this Idempotency-Key was used for a different request")
        }
        var replay =
            record.response
            ?? Applier.tandemAnswer(
                409, "idempotency_response_unavailable",
                "the write with this Idempotency-Key was applied at index \(record.index); its response is not kept "
                    + "on this node any more")
        replay.replayed = true
        return replay
    }

    /// Records the entry applied for a key (its response when this node has it).
    mutating func record(command: WriteCommand, index: UInt64, response: AppliedResponse?, timeMs: Int64) {
        guard let key = Self.key(of: command), records[key] == nil else { return }
        // Log time comes from a leader's clock and may sit at the end of the range: the expiry saturates.
        let (sum, overflow) = timeMs.addingReportingOverflow(ttlMs)
        let expiry = overflow ? (ttlMs > 0 ? Int64.max : Int64.min) : sum
        records[key] = Record(
            fingerprint: Self.fingerprint(command), index: index, expiresAtMs: expiry, response: response)
        responseBytes += response.map(Self.size) ?? 0
        order.append((key, expiry))
        if records.count > capacity, orderHead < order.count {
            forget(order[orderHead].key)
            orderHead += 1
        }
        boundResponses()
        precondition(records.count <= capacity, "the idempotency table outgrew its key cap")
        precondition(responseBytes >= 0 && responseBytes <= responseBytesMax, "stored response bytes out of bounds")
    }

    /// Replays the table's decisions for one committed entry without an app: what a restarted node does for
    /// the entries it applied before (`responses` holds the answers a graceful stop saved, by key).
    mutating func rebuild(command: WriteCommand, index: UInt64, timeMs: Int64, responses: [String: SavedResponse]) {
        guard check(command: command, timeMs: timeMs) == nil, let key = Self.key(of: command) else { return }
        let saved = responses[key].flatMap { $0.index == index ? $0.response : nil }
        record(command: command, index: index, response: saved, timeMs: timeMs)
    }

    private mutating func expire(before timeMs: Int64) {
        while orderHead < order.count && order[orderHead].expiresAtMs <= timeMs {
            forget(order[orderHead].key)
            orderHead += 1
        }
        if orderHead > 4096 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            responseHead = max(0, responseHead - orderHead)
            orderHead = 0
        }
    }

    private mutating func forget(_ key: String) {
        if let response = records.removeValue(forKey: key)?.response { responseBytes -= Self.size(response) }
    }

    private mutating func boundResponses() {
        responseHead = max(responseHead, orderHead)
        while responseBytes > responseBytesMax && responseHead < order.count {
            let key = order[responseHead].key
            if let response = records[key]?.response {
                responseBytes -= Self.size(response)
                records[key]?.response = nil
            }
            responseHead += 1
        }
    }

    private static func size(_ response: AppliedResponse) -> Int {
        response.body.count + response.reason.utf8.count
            + response.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    /// What makes two requests "the same" for a key: method, target and body.
    static func fingerprint(_ command: WriteCommand) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
            hash = (hash ^ 0xff) &* 0x0000_0100_0000_01b3
        }
        mix(command.method.utf8)
        mix(command.target.utf8)
        mix(command.body)
        return hash
    }

    // MARK: saving the responses across a graceful restart

    struct SavedResponse {
        var index: UInt64
        var response: AppliedResponse
    }

    /// The stored responses, for the checkpoint a graceful stop writes.
    func encodedResponses() -> [UInt8] {
        var writer = ByteWriter()
        for position in orderHead..<order.count {
            let key = order[position].key
            guard let record = records[key], let response = record.response else { continue }
            writer.string(key)
            writer.u64(record.index)
            writer.u64(UInt64(response.status))
            writer.string(response.reason)
            writer.u64(UInt64(response.headers.count))
            for field in response.headers {
                writer.string(field.name)
                writer.string(field.value)
            }
            writer.bytes(response.body)
        }
        return writer.buffer
    }

    /// The responses saved by `encodedResponses`; nil when the bytes are not a complete encoding.
    static func decodeResponses(_ bytes: [UInt8]) -> [String: SavedResponse]? {
        var reader = ByteReader(input: bytes)
        var saved: [String: SavedResponse] = [:]
        while !reader.isAtEnd {
            guard let key = reader.string(), let index = reader.u64(), let status = reader.u64(),
                status < 1000, let reason = reader.string(), let fieldCount = reader.u64(), fieldCount < 10_000
            else { return nil }
            var headers = HTTPHeaders()
            for _ in 0..<fieldCount {
                guard let name = reader.string(), let value = reader.string() else { return nil }
                headers.add(name: name, value: value)
            }
            guard let body = reader.bytes() else { return nil }
            saved[key] = SavedResponse(
                index: index,
                response: AppliedResponse(status: Int(status), reason: reason, headers: headers, body: body))
        }
        return saved
    }
}

/// Length-prefixed little-endian encoding of the saved responses.
private struct ByteWriter {
    var buffer: [UInt8] = []
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func bytes(_ value: [UInt8]) {
        u64(UInt64(value.count))
        buffer.append(contentsOf: value)
    }
    mutating func string(_ value: String) { bytes(Array(value.utf8)) }
}

private struct ByteReader {
    let input: [UInt8]
    var offset = 0
    var isAtEnd: Bool { offset == input.count }

    mutating func u64() -> UInt64? {
        guard input.count - offset >= 8 else { return nil }
        var value: UInt64 = 0
        for shift in 0..<8 { value |= UInt64(input[offset + shift]) << (8 * UInt64(shift)) }
        offset += 8
        return value
    }

    mutating func bytes() -> [UInt8]? {
        guard let length = u64(), length <= UInt64(input.count - offset) else { return nil }
        defer { offset += Int(length) }
        return Array(input[offset..<(offset + Int(length))])
    }

    mutating func string() -> String? { bytes().map { String(decoding: $0, as: UTF8.self) } }
}
