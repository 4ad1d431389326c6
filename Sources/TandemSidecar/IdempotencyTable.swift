import TandemHTTP

/// The replicated dedupe table of `Idempotency-Key`.
///
/// Which entries are applied and which are answered from the table is a function of the log alone: keys, request
/// fingerprints, entry indexes and log time (for the TTL), with eviction by TTL, by count and by bytes in log order
/// (oldest index first). So every replica makes the same decisions, and a restarted node rebuilds the decisions by
/// reading its log again (`rebuild`). The byte bound counts, for each remembered key, the key and its request
/// fingerprint: both come from the log alone, never from a response, so the keys evicted are the same everywhere. The stored *responses* are this node's app's answers: they are kept in memory, saved by a
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
    /// What a fingerprint adds to a key's share of the byte bound.
    static let fingerprintBytes = MemoryLayout<UInt64>.size
    let ttlMs: Int64
    /// Hard cap on remembered keys; beyond it the oldest are forgotten early (documented in the README).
    let capacity: Int
    /// `TANDEM_IDEMPOTENCY_MAX_BYTES`: the cap on `decisionBytes` (beyond it the oldest keys are forgotten early,
    /// the same keys on every replica) and, separately, on `responseBytes` (beyond it the oldest responses are
    /// dropped, their keys stay decided).
    let maxBytes: Int
    /// Cap on the bytes of stored responses: the same limit as the keys', counted apart because responses are
    /// this node's alone.
    var responseBytesMax: Int { maxBytes }
    private var records: [String: Record] = [:]
    /// Keys in the order they were recorded; log time never decreases, so expiry is first-in, first-out.
    private var order: [(key: String, expiresAtMs: Int64)] = []
    private var orderHead = 0
    /// The oldest position in `order` whose response may still be stored.
    private var responseHead = 0
    private(set) var responseBytes = 0
    /// Key and fingerprint bytes of the remembered keys; a function of the log alone.
    private(set) var decisionBytes = 0
    /// The log index of the last key recorded: keys are recorded in log order, which is the eviction order.
    private(set) var lastRecordedIndex: UInt64 = 0

    init(ttlMs: Int64, capacity: Int = 200_000, maxBytes: Int = 64 << 20) {
        precondition(capacity > 0, "the table remembers at least one key")
        precondition(maxBytes >= Self.keyBytesMax + Self.fingerprintBytes, "the byte bound holds at least one key")
        self.ttlMs = ttlMs
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// An empty table with the same TTL and bounds (a replay from the start of the log).
    func emptied() -> IdempotencyTable {
        IdempotencyTable(ttlMs: ttlMs, capacity: capacity, maxBytes: maxBytes)
    }

    /// What a remembered key counts against the byte bound.
    static func decisionBytes(key: String) -> Int { key.utf8.count + fingerprintBytes }

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
        precondition(index > lastRecordedIndex, "keys are recorded in log order: \(index) after \(lastRecordedIndex)")
        lastRecordedIndex = index
        // Log time comes from a leader's clock and may sit at the end of the range: the expiry saturates.
        let (sum, overflow) = timeMs.addingReportingOverflow(ttlMs)
        let expiry = overflow ? (ttlMs > 0 ? Int64.max : Int64.min) : sum
        insert(
            key: key,
            Record(fingerprint: Self.fingerprint(command), index: index, expiresAtMs: expiry, response: response))
        evictOldestBeyondBounds()
        boundResponses()
        precondition(records.count <= capacity, "the idempotency table outgrew its key cap")
        precondition(decisionBytes >= 0 && decisionBytes <= maxBytes, "remembered key bytes out of bounds")
        precondition(responseBytes >= 0 && responseBytes <= responseBytesMax, "stored response bytes out of bounds")
    }

    private mutating func insert(key: String, _ record: Record) {
        records[key] = record
        responseBytes += record.response.map(Self.size) ?? 0
        decisionBytes += Self.decisionBytes(key: key)
        order.append((key, record.expiresAtMs))
    }

    /// Forgets the keys of the lowest log indexes until both the count and the byte bound hold. The newest key
    /// goes too when it alone exceeds the byte bound (only a bound below one longest key allows that).
    private mutating func evictOldestBeyondBounds() {
        while (records.count > capacity || decisionBytes > maxBytes) && orderHead < order.count {
            forget(order[orderHead].key)
            orderHead += 1
        }
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
        guard let record = records.removeValue(forKey: key) else { return }
        decisionBytes -= Self.decisionBytes(key: key)
        if let response = record.response { responseBytes -= Self.size(response) }
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

    static func size(_ response: AppliedResponse) -> Int {
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

// MARK: the table in a snapshot

extension IdempotencyTable {
    /// The most keys a snapshot may list, whatever the saving node's cap (far above any configured one).
    static let snapshotCapacityMax = 100_000_000
    /// The largest byte bound a snapshot may carry.
    static let snapshotMaxBytesMax = 1 << 46

    /// Writes the whole table, keys oldest first: bounds, decisions and the responses this node still has. What
    /// `init(decodingState:)` reads back.
    func encodeState(into writer: inout StateBytesWriter) {
        precondition(order.count - orderHead == records.count, "every queued key is remembered, once")
        writer.i64(ttlMs)
        writer.u64(UInt64(capacity))
        writer.u64(UInt64(maxBytes))
        writer.u64(lastRecordedIndex)
        writer.u64(UInt64(records.count))
        for position in orderHead..<order.count {
            let key = order[position].key
            guard let record = records[key] else { preconditionFailure("a queued key is remembered") }
            writer.string(key)
            writer.u64(record.fingerprint)
            writer.u64(record.index)
            writer.i64(record.expiresAtMs)
            guard let response = record.response else {
                writer.u8(0)
                continue
            }
            writer.u8(1)
            writer.u16(UInt16(clamping: response.status))
            writer.string(response.reason)
            writer.u32(UInt32(response.headers.count))
            for field in response.headers {
                writer.string(field.name)
                writer.string(field.value)
            }
            writer.bytes(response.body)
        }
    }

    /// Reads a table written by `encodeState`, refusing anything `record` could not have built: keys out of log
    /// order, duplicated or too long, bounds exceeded, responses that could not be sent as they are.
    init(decodingState reader: inout StateBytesReader) throws(SnapshotStateError) {
        let ttlMs = try reader.i64("idempotency TTL")
        let capacity = try reader.u64("idempotency key cap")
        let maxBytes = try reader.u64("idempotency byte bound")
        guard ttlMs > 0 else { throw SnapshotStateError("the idempotency TTL \(ttlMs) is not positive") }
        guard capacity >= 1 && capacity <= UInt64(Self.snapshotCapacityMax) else {
            throw SnapshotStateError("the idempotency key cap \(capacity) is out of range")
        }
        guard
            maxBytes >= UInt64(Self.keyBytesMax + Self.fingerprintBytes) && maxBytes <= UInt64(Self.snapshotMaxBytesMax)
        else { throw SnapshotStateError("the idempotency byte bound \(maxBytes) is out of range") }
        self.init(ttlMs: ttlMs, capacity: Int(capacity), maxBytes: Int(maxBytes))
        let lastRecordedIndex = try reader.u64("last recorded index")
        let count = try reader.u64("idempotency key count")
        guard count <= capacity else {
            throw SnapshotStateError("\(count) idempotency keys exceed the cap of \(capacity)")
        }
        var previousIndex: UInt64 = 0
        for _ in 0..<count {
            let key = try reader.utf8String("idempotency key", maxBytes: Self.keyBytesMax)
            guard !key.isEmpty, records[key] == nil else {
                throw SnapshotStateError("an idempotency key is empty or listed twice")
            }
            let fingerprint = try reader.u64("fingerprint")
            let index = try reader.u64("key index")
            let expiresAtMs = try reader.i64("key expiry")
            guard index > previousIndex, index <= lastRecordedIndex else {
                throw SnapshotStateError("idempotency key index \(index) is out of log order")
            }
            previousIndex = index
            let response: AppliedResponse?
            switch try reader.u8("response flag") {
            case 0: response = nil
            case 1: response = try Self.decodeResponse(&reader)
            case let flag: throw SnapshotStateError("unknown response flag \(flag)")
            }
            insert(
                key: key, Record(fingerprint: fingerprint, index: index, expiresAtMs: expiresAtMs, response: response))
        }
        guard decisionBytes <= self.maxBytes, responseBytes <= responseBytesMax else {
            throw SnapshotStateError("the idempotency table exceeds its byte bound of \(maxBytes)")
        }
        self.lastRecordedIndex = lastRecordedIndex
    }

    /// The most header fields a stored response may carry (the app's responses are held to far fewer).
    static let snapshotHeaderFieldsMax = 1024

    private static func decodeResponse(_ reader: inout StateBytesReader) throws(SnapshotStateError) -> AppliedResponse {
        let status = try reader.u16("status")
        guard (100...999).contains(status) else { throw SnapshotStateError("response status \(status) is invalid") }
        // A stored response is replayed to clients as it is: nothing in it may split or forge a header line.
        let reason = try reader.utf8String("reason phrase", maxBytes: 1024)
        guard Self.isFieldValue(reason) else { throw SnapshotStateError("a reason phrase has control characters") }
        let fieldCount = try reader.u32("header field count")
        guard fieldCount <= Self.snapshotHeaderFieldsMax else {
            throw SnapshotStateError("\(fieldCount) header fields are too many")
        }
        var headers = HTTPHeaders()
        for _ in 0..<fieldCount {
            let name = try reader.utf8String("header name", maxBytes: 1024)
            let value = try reader.utf8String("header value", maxBytes: 65536)
            guard isValidFieldName(name), Self.isFieldValue(value) else {
                throw SnapshotStateError("a stored header field is malformed")
            }
            headers.add(name: name, value: value)
        }
        let body = try reader.bytes("response body")
        return AppliedResponse(status: Int(status), reason: reason, headers: headers, body: body)
    }

    /// Field content: tabs, visible characters, spaces and obs-text; never CR, LF, NUL or other controls.
    private static func isFieldValue(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    /// The decisions of two tables agree: same keys in the same order with the same fingerprints, indexes and
    /// expiries, and the same bounds. Responses are local and not compared.
    func hasSameDecisions(as other: IdempotencyTable) -> Bool {
        guard ttlMs == other.ttlMs, capacity == other.capacity, maxBytes == other.maxBytes,
            lastRecordedIndex == other.lastRecordedIndex, records.count == other.records.count
        else { return false }
        let keys = order[orderHead...].map(\.key)
        guard keys == other.order[other.orderHead...].map(\.key) else { return false }
        return keys.allSatisfy { key in
            let mine = records[key]!
            let theirs = other.records[key]!
            return mine.fingerprint == theirs.fingerprint && mine.index == theirs.index
                && mine.expiresAtMs == theirs.expiresAtMs
        }
    }

    /// The stored response for `key`, if this node has it (tests and the snapshot round trip).
    func storedResponse(for key: String) -> AppliedResponse? { records[key]?.response }
}
