import Glibc
import Logging
import TandemHTTP

/// The line format of Tandem's logs: one JSON object per line for log shippers, or `key=value` text for people.
public enum LogLineFormat: Sendable {
    case json
    case text
}

/// A swift-log handler that writes one line per event to standard error, unbuffered, so that a crash never
/// loses the line that explains it.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: LogLineFormat

    public init(label: String, level: Logger.Level, format: LogLineFormat) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line: String
        switch format {
        case .json: line = jsonLine(level: event.level, message: "\(event.message)", metadata: merged)
        case .text: line = textLine(level: event.level, message: "\(event.message)", metadata: merged)
        }
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { raw in _ = Glibc.write(2, raw.baseAddress, raw.count) }
    }

    private func jsonLine(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "{\"ts\":\"\(Self.timestamp())\",\"level\":\"\(level)\",\"logger\":\(jsonString(label)),"
        line += "\"msg\":\(jsonString(message))"
        for key in metadata.keys.sorted() {
            line += ",\(jsonString(key)):\(jsonString("\(metadata[key]!)"))"
        }
        return line + "}"
    }

    private func textLine(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(Self.timestamp()) \(level) \(message)"
        for key in metadata.keys.sorted() {
            let value = "\(metadata[key]!)"
            let needsQuotes = value.contains(" ") || value.isEmpty || value.contains("\"")
            line += " \(key)=" + (needsQuotes ? jsonString(value) : value)
        }
        return line
    }

    /// RFC 3339 UTC timestamp with milliseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var seconds = ts.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(ts.tv_nsec / 1_000_000)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}

/// A JSON string literal with every character that JSON requires escaped (TandemHTTP's escaper, shared with the
/// error responses, so there is one definition of it).
func jsonString(_ text: String) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count + 2)
    TandemErrorResponse.appendJSONString(text, into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

/// Installs the process-wide log handler. Call once, before anything logs.
public func bootstrapLogging(level: Logger.Level, format: LogLineFormat) {
    LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level, format: format) }
}

/// A JSON number; JSON has no infinity or NaN, so those become null.
func jsonNumber(_ value: Double) -> String {
    guard value.isFinite else { return "null" }
    return String(value)
}
