// HeadWriter: heads serialized into a scratch buffer on the stack, then appended to the caller's array with one
// copy. Appending each piece of a head (a name, ": ", a value, CRLF) to the array cost a call of the generic
// `append(contentsOf:)` each, about ninety instructions apiece, for pieces of a few bytes.

/// Writes the bytes of one head. Pieces go into the scratch buffer; a head larger than it goes on in `spill`.
struct HeadWriter {
    /// The scratch buffer's size: stack allocation is safe up to this size, and nearly every head fits.
    static let scratchBytes = 1024

    private let scratch: UnsafeMutableRawBufferPointer
    /// `scratch`'s start, unwrapped once.
    private let base: UnsafeMutableRawPointer
    // Invariant: 0 <= used <= scratch.count.
    private var used = 0
    /// The bytes written before the scratch buffer last filled up, in order.
    private(set) var spill: [UInt8] = []

    fileprivate init(scratch: UnsafeMutableRawBufferPointer) {
        guard let base = scratch.baseAddress, scratch.count >= 8 else {
            preconditionFailure("the scratch buffer is allocated with room for a few bytes")
        }
        self.scratch = scratch
        self.base = base
    }

    /// The bytes written since the last spill.
    fileprivate var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: scratch[0..<used]) }

    private mutating func spillScratch() {
        spill.appendBytes(pending)
        used = 0
    }

    /// Writes bytes; inlined, so the common case (they fit) costs a compare and a copy.
    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        if count <= scratch.count &- used, let source = bytes.baseAddress {
            (base + used).copyMemory(from: source, byteCount: count)
            used &+= count
        } else {
            writeSpilling(bytes)
        }
    }

    /// `write` when the bytes do not fit in what is left of the scratch buffer (or there are none).
    private mutating func writeSpilling(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        spillScratch()
        if bytes.count > scratch.count {
            spill.appendBytes(bytes)
        } else {
            write(bytes)
        }
    }

    @inline(__always)
    mutating func write(_ byte: UInt8) {
        if used == scratch.count { spillScratch() }
        base.storeBytes(of: byte, toByteOffset: used, as: UInt8.self)
        used &+= 1
    }

    @inline(__always)
    mutating func write(_ literal: StaticString) {
        write(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    mutating func writeUTF8(_ text: String) {
        withUTF8Bytes(text) { write($0) }
    }

    @inline(__always)
    mutating func writeCRLF() {
        write(ASCII.carriageReturn)
        write(ASCII.lineFeed)
    }

    mutating func writeDecimal(_ value: UInt64) {
        withDecimalDigits(value) { write($0) }
    }

    /// `name: value CRLF` for a field whose name and value were checked already.
    mutating func writeField(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        write(name)
        write(ASCII.colon)
        write(ASCII.space)
        write(value)
        writeCRLF()
    }

    /// `HTTP/1.1 SP status SP reason CRLF`; the reason must have been checked for CR, LF and NUL.
    mutating func writeStatusLine(status: Int, reason: String, version: HTTPVersion) {
        // `HTTP/1.x NNN ` in one piece.
        var start: (UInt64, UInt64) = (0, 0)
        Swift.withUnsafeMutableBytes(of: &start) { line in
            let prefix: StaticString = "HTTP/1.1 "
            line.copyMemory(from: UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
            if version == .http1_0 { line[7] = UInt8(ascii: "0") }
            line[9] = UInt8(ascii: "0") + UInt8(status / 100)
            line[10] = UInt8(ascii: "0") + UInt8(status / 10 % 10)
            line[11] = UInt8(ascii: "0") + UInt8(status % 10)
            line[12] = ASCII.space
            write(UnsafeRawBufferPointer(rebasing: line[0..<13]))
        }
        writeUTF8(reason)
        writeCRLF()
    }
}

extension [UInt8] {
    /// Runs `body` with a writer and appends what it wrote, with one copy for a head of up to
    /// `HeadWriter.scratchBytes` bytes.
    mutating func appendHead(_ body: (inout HeadWriter) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: HeadWriter.scratchBytes, alignment: 1) { scratch in
            var writer = HeadWriter(scratch: scratch)
            body(&writer)
            if !writer.spill.isEmpty { append(contentsOf: writer.spill) }
            appendBytes(writer.pending)
        }
    }
}
