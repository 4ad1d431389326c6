// example-kv: a small in-memory key-value and counter service, the app that Tandem's demo, tests and
// benchmarks put behind the sidecar. It owns the store, its HTTP routes and the canonical /dump.
// It must be deterministic: the same requests in the same order give the same responses and the same /dump
// bytes on every replica, so it never reads the clock, randomness or anything else outside the request.

/// The whole state of example-kv and the operations on it, as a value type with no I/O.
///
/// Each request is applied at once, in arrival order, which is the order Tandem delivers committed writes in.
struct KVStore {
    /// Values are raw bytes. Invariant: every value is at most `valueMaxBytes` long.
    private(set) var values: [[UInt8]: [UInt8]] = [:]
    /// Counters start at 0 when first incremented; a GET of an absent counter does not create it.
    private(set) var counters: [[UInt8]: Int64] = [:]
    /// Sum of the sizes of all keys, values and counter names. Invariant: <= `totalMaxBytes`.
    private(set) var totalBytes = 0

    /// The largest value, equal to the largest request body, so an append can never build what a PUT could not.
    static let valueMaxBytes = 16 << 20
    /// The longest key or counter name, after percent-decoding.
    static let keyMaxBytes = 1024
    /// The most keys, and separately the most counters, the store holds.
    static let entriesMax = 1_000_000
    /// Bound on the memory held by the store; beyond it writes get 507 rather than growing without limit.
    static let totalMaxBytes = 1 << 30

    /// Applies one request and returns the response. Never traps on any input.
    mutating func handle(method: KVMethod, route: KVRoute, body: [UInt8]) -> KVResponse {
        switch route {
        case .health:
            return method.isRead ? .json(200, "{\"status\":\"ok\"}") : .methodNotAllowed("GET, HEAD")
        case .dump:
            return method.isRead
                ? KVResponse(status: 200, contentType: .json, body: dump()) : .methodNotAllowed("GET, HEAD")
        case .snapshot:
            // The state for Tandem's snapshot hooks: GET reads it (the /dump bytes), PUT replaces all of it.
            if method.isRead { return KVResponse(status: 200, contentType: .json, body: dump()) }
            return method == .put ? restore(body) : .methodNotAllowed("GET, HEAD, PUT")
        case .value(let key):
            switch method {
            case .get, .head: return get(key)
            case .put: return put(key, body)
            case .delete: return delete(key)
            default: return .methodNotAllowed("GET, HEAD, PUT, DELETE")
            }
        case .append(let key):
            return method == .post ? append(key, body) : .methodNotAllowed("POST")
        case .counter(let name):
            return method.isRead ? counterResponse(name, counters[name] ?? 0) : .methodNotAllowed("GET, HEAD")
        case .increment(let name):
            return method == .post ? increment(name) : .methodNotAllowed("POST")
        case .notFound:
            return .error(404, "not_found")
        case .badPath:
            return .error(400, "bad_path")
        }
    }

    private func get(_ key: [UInt8]) -> KVResponse {
        guard let value = values[key] else { return .error(404, "not_found") }
        return KVResponse(status: 200, contentType: .bytes, body: value)
    }

    private mutating func put(_ key: [UInt8], _ body: [UInt8]) -> KVResponse {
        guard body.count <= KVStore.valueMaxBytes else { return .error(413, "value_too_large") }
        let old = values[key]
        if old == nil && values.count >= KVStore.entriesMax { return .error(507, "store_full") }
        let growth = body.count - (old?.count ?? -key.count)
        guard totalBytes + growth <= KVStore.totalMaxBytes else { return .error(507, "store_full") }
        values[key] = body
        totalBytes += growth
        checkInvariants()
        return KVResponse(status: 200, contentType: .json, body: [])
    }

    private mutating func delete(_ key: [UInt8]) -> KVResponse {
        guard let old = values.removeValue(forKey: key) else { return .error(404, "not_found") }
        totalBytes -= key.count + old.count
        checkInvariants()
        return KVResponse(status: 200, contentType: .json, body: [])
    }

    private mutating func append(_ key: [UInt8], _ body: [UInt8]) -> KVResponse {
        let oldCount = values[key]?.count
        if oldCount == nil && values.count >= KVStore.entriesMax { return .error(507, "store_full") }
        guard (oldCount ?? 0) + body.count <= KVStore.valueMaxBytes else { return .error(413, "value_too_large") }
        let growth = body.count + (oldCount == nil ? key.count : 0)
        guard totalBytes + growth <= KVStore.totalMaxBytes else { return .error(507, "store_full") }
        values[key, default: []].append(contentsOf: body)
        totalBytes += growth
        checkInvariants()
        return KVResponse(status: 200, contentType: .bytes, body: values[key] ?? [])
    }

    private mutating func increment(_ name: [UInt8]) -> KVResponse {
        let old = counters[name]
        if old == nil {
            guard counters.count < KVStore.entriesMax, totalBytes + name.count <= KVStore.totalMaxBytes else {
                return .error(507, "store_full")
            }
            totalBytes += name.count
        }
        // Wrapping keeps the service total (it never traps); 2^63 increments are out of reach in practice.
        let value = (old ?? 0) &+ 1
        counters[name] = value
        return counterResponse(name, value)
    }

    private func counterResponse(_ name: [UInt8], _ value: Int64) -> KVResponse {
        var body: [UInt8] = []
        body.reserveCapacity(name.count + 32)
        body.append(contentsOf: Array("{\"name\":".utf8))
        JSONText.appendString(name, to: &body)
        body.append(contentsOf: Array(",\"value\":\(value)}".utf8))
        return KVResponse(status: 200, contentType: .json, body: body)
    }

    /// The whole state as canonical JSON: `{"counters":{...},"kv":{...}}`, keys sorted by their raw bytes,
    /// no spaces, strings escaped by `JSONText`. Equal states give equal bytes, so replicas compare with `cmp`.
    func dump() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(totalBytes + 32 * (values.count + counters.count) + 32)
        out.append(contentsOf: Array("{\"counters\":{".utf8))
        for (i, name) in counters.keys.sorted(by: KVStore.byteOrder).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONText.appendString(name, to: &out)
            out.append(contentsOf: Array(":\(counters[name] ?? 0)".utf8))
        }
        out.append(contentsOf: Array("},\"kv\":{".utf8))
        for (i, key) in values.keys.sorted(by: KVStore.byteOrder).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONText.appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            JSONText.appendString(values[key] ?? [], to: &out)
        }
        out.append(contentsOf: Array("}}".utf8))
        return out
    }

    /// Lexicographic order of raw bytes: independent of locale and of Unicode normalization.
    static func byteOrder(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.lexicographicallyPrecedes(b)
    }

    /// Replaces the whole state (see `restore`, which validated the bounds).
    mutating func replaceAll(values: [[UInt8]: [UInt8]], counters: [[UInt8]: Int64], totalBytes: Int) {
        self.values = values
        self.counters = counters
        self.totalBytes = totalBytes
        checkInvariants()
    }

    private func checkInvariants() {
        assert(totalBytes >= 0 && totalBytes <= KVStore.totalMaxBytes, "store size within its bound")
        assert(values.count <= KVStore.entriesMax && counters.count <= KVStore.entriesMax, "entry counts bounded")
    }
}

/// The request methods example-kv distinguishes; anything else is `.other` and gets 405 on a known path.
enum KVMethod: Equatable {
    case get, head, put, post, delete, other

    var isRead: Bool { self == .get || self == .head }
}

/// Where a request goes, decided from its path alone.
enum KVRoute: Equatable {
    case health, dump, snapshot
    case value([UInt8]), append([UInt8])
    case counter([UInt8]), increment([UInt8])
    case notFound
    /// A path whose key is not valid percent-encoding, or too long.
    case badPath

    /// Routes a raw (still percent-encoded) path without its query string.
    /// `/kv/{key}`, `/kv/{key}/append`, `/counters/{name}`, `/counters/{name}/incr`, `/dump`, `/healthz`.
    init<C: Collection>(path: C) where C.Element == UInt8 {
        let segments = path.split(separator: UInt8(ascii: "/"), maxSplits: 4, omittingEmptySubsequences: false)
        guard segments.count >= 2, segments[0].isEmpty else {
            self = .notFound
            return
        }
        let head = segments[1]
        if segments.count == 2 {
            if head.elementsEqual("healthz".utf8) {
                self = .health
            } else if head.elementsEqual("dump".utf8) {
                self = .dump
            } else {
                self = head.elementsEqual("snapshot".utf8) ? .snapshot : .notFound
            }
            return
        }
        let isKV = head.elementsEqual("kv".utf8)
        guard isKV || head.elementsEqual("counters".utf8), segments.count <= 4, !segments[2].isEmpty else {
            self = .notFound
            return
        }
        guard let key = KVRoute.percentDecoded(segments[2]) else {
            self = .badPath
            return
        }
        if segments.count == 3 {
            self = isKV ? .value(key) : .counter(key)
        } else if isKV && segments[3].elementsEqual("append".utf8) {
            self = .append(key)
        } else if !isKV && segments[3].elementsEqual("incr".utf8) {
            self = .increment(key)
        } else {
            self = .notFound
        }
    }

    /// Decodes `%XX` escapes so that `%2F` can put a slash in a key; nil for a broken escape or a key that
    /// would exceed `KVStore.keyMaxBytes`.
    static func percentDecoded<C: Collection>(_ raw: C) -> [UInt8]? where C.Element == UInt8 {
        guard raw.count <= 3 * KVStore.keyMaxBytes else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var iterator = raw.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            out.append(high << 4 | low)
        }
        return out.count <= KVStore.keyMaxBytes ? out : nil
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A response before it is written to the wire.
struct KVResponse: Equatable {
    enum ContentType: Equatable {
        /// `application/json`.
        case json
        /// `application/octet-stream`: a stored value, returned byte for byte.
        case bytes
    }

    var status: Int32
    var contentType: ContentType
    var body: [UInt8]
    /// The `Allow` header of a 405.
    var allow: String? = nil

    static func json(_ status: Int32, _ text: String) -> KVResponse {
        KVResponse(status: status, contentType: .json, body: Array(text.utf8))
    }

    /// The error body used throughout: `{"error":"<code>"}`.
    static func error(_ status: Int32, _ code: String) -> KVResponse {
        .json(status, "{\"error\":\"\(code)\"}")
    }

    static func methodNotAllowed(_ allow: String) -> KVResponse {
        KVResponse(
            status: 405, contentType: .json, body: Array("{\"error\":\"method_not_allowed\"}".utf8), allow: allow)
    }

    /// The reason phrase for the status line.
    var reason: String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 413: return "Payload Too Large"
        case 507: return "Insufficient Storage"
        default: return "Unknown"
        }
    }
}
