import TandemConsensus
import TandemStorage

/// How a consensus entry is stored in a WAL record payload (the record itself carries index and term):
/// [kind u8][timeMs i64 LE][has proposal u8][origin length u16 LE][origin utf8][sequence u64 LE][data...].
enum EntryPayload {
    enum DecodeError: Error { case truncated, badKind, badOrigin }

    static func encode(_ entry: Entry) -> WALEntry {
        var payload: [UInt8] = []
        let origin = entry.proposal.map { Array($0.origin.rawValue.utf8) } ?? []
        payload.reserveCapacity(entry.data.count + 24 + origin.count)
        payload.append(entry.kind.rawValue)
        appendLittleEndian(UInt64(bitPattern: entry.timeMs), into: &payload)
        if let proposal = entry.proposal {
            payload.append(1)
            appendLittleEndian(UInt16(origin.count), into: &payload)
            payload.append(contentsOf: origin)
            appendLittleEndian(proposal.sequence, into: &payload)
        } else {
            payload.append(0)
        }
        payload.append(contentsOf: entry.data)
        return WALEntry(index: entry.index, term: entry.term, payload: payload)
    }

    static func decode(_ record: WALEntry) throws(DecodeError) -> Entry {
        let bytes = record.payload
        var offset = 0
        func take(_ count: Int) throws(DecodeError) -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else { throw .truncated }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
        let kindByte: UInt8 = try take(1).first!
        guard let kind = EntryKind(rawValue: kindByte) else { throw .badKind }
        let timeMs = Int64(bitPattern: littleEndian(try take(8)))
        var proposal: ProposalID?
        if try take(1).first! == 1 {
            let originLength = Int(littleEndian(try take(2)) as UInt16)
            guard let origin = String(validating: try take(originLength), as: UTF8.self) else { throw .badOrigin }
            proposal = ProposalID(origin: NodeID(origin), sequence: littleEndian(try take(8)))
        }
        return Entry(
            term: record.term, index: record.index, kind: kind, timeMs: timeMs, proposal: proposal,
            data: Array(bytes[offset...]))
    }

    private static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, into buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func littleEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>) -> T {
        var value: T = 0
        for (shift, byte) in bytes.enumerated() { value |= T(byte) << (shift * 8) }
        return value
    }
}
