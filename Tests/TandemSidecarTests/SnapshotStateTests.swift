import TandemHTTP
import XCTest

@testable import TandemSidecar

/// A deterministic generator (SplitMix64), so that every failure reproduces from its seed.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What Tandem saves beside the app's state: it must come back exactly, and hostile bytes must never trap.
final class SnapshotStateTests: XCTestCase {
    private func command(key: String?, body: String = "") -> WriteCommand {
        var headers = HTTPHeaders()
        if let key { headers.add(name: "Idempotency-Key", value: key) }
        return WriteCommand(method: "POST", target: "/items", headers: headers, body: Array(body.utf8))
    }

    private func response(_ text: String, status: Int = 201) -> AppliedResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "X-Item", value: text)
        return AppliedResponse(status: status, reason: "Created", headers: headers, body: Array(text.utf8))
    }

    /// A table and digest after 30 applied entries: keys with and without stored responses, some forgotten.
    private func sampleState() -> TandemSnapshotState {
        var table = IdempotencyTable(ttlMs: 60_000, capacity: 16, maxBytes: 2_000)
        var digest = ApplyDigest()
        for index in 1...UInt64(1_030) {
            digest.fold(index: index, status: 200, body: Array("r\(index)".utf8))
            guard index > 1_000 else { continue }
            let key = "key-\(index)"
            // Every third write's answer is lost (as after a crash), the others stored.
            let answer = index % 3 == 0 ? nil : response("item \(index) \u{e9}")
            table.record(command: command(key: key, body: "b\(index)"), index: index, response: answer, timeMs: 5_000)
        }
        return TandemSnapshotState(
            appliedIndex: 1_030, appliedTerm: 4, timeMs: 5_000, idempotency: table, digest: ApplyDigestState(digest))
    }

    private func assertSame(
        _ a: TandemSnapshotState, _ b: TandemSnapshotState, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.appliedIndex, b.appliedIndex, file: file, line: line)
        XCTAssertEqual(a.appliedTerm, b.appliedTerm, file: file, line: line)
        XCTAssertEqual(a.timeMs, b.timeMs, file: file, line: line)
        XCTAssertEqual(a.digest, b.digest, file: file, line: line)
        XCTAssertTrue(a.idempotency.hasSameDecisions(as: b.idempotency), file: file, line: line)
        XCTAssertEqual(a.idempotency.responseBytes, b.idempotency.responseBytes, file: file, line: line)
    }

    func testTheStateComesBackExactlyAndDecidesTheNextEntriesTheSame() throws {
        let original = sampleState()
        XCTAssertEqual(original.digest.lastCompletedBlock?.index, 1_023, "the sample crosses a digest block")
        XCTAssertEqual(original.idempotency.count, 16, "the sample forgot keys at the cap")
        let decoded = try TandemSnapshotState.decode(original.encoded())
        assertSame(original, decoded)
        XCTAssertEqual(decoded.encoded(), original.encoded(), "one encoding per state")
        for index in 1_015...1_030 {
            let key = "key-\(index)"
            let mine = original.idempotency.storedResponse(for: key)
            let theirs = decoded.idempotency.storedResponse(for: key)
            XCTAssertEqual(mine?.status, theirs?.status, key)
            XCTAssertEqual(mine?.reason, theirs?.reason, key)
            XCTAssertEqual(mine?.headers, theirs?.headers, key)
            XCTAssertEqual(mine?.body, theirs?.body, key)
            XCTAssertEqual(mine == nil, index % 3 == 0, key)
        }
        // The restored table decides what follows exactly like the one that applied the log.
        var live = original.idempotency
        var restored = decoded.idempotency
        let next: [(WriteCommand, Int64)] = [
            (command(key: "key-1030", body: "b1030"), 6_000), (command(key: "key-1029", body: "other"), 6_000),
            (command(key: "key-1001"), 6_000), (command(key: "fresh"), 70_000), (command(key: "key-1030"), 70_000),
        ]
        for (offset, (write, time)) in next.enumerated() {
            let a = live.check(command: write, timeMs: time)
            let b = restored.check(command: write, timeMs: time)
            XCTAssertEqual(a?.status, b?.status, "entry \(offset)")
            XCTAssertEqual(a?.body, b?.body, "entry \(offset)")
            if a == nil {
                live.record(command: write, index: UInt64(1_031 + offset), response: nil, timeMs: time)
                restored.record(command: write, index: UInt64(1_031 + offset), response: nil, timeMs: time)
            }
        }
        XCTAssertTrue(live.hasSameDecisions(as: restored))
    }

    func testAnEmptyStateRoundTrips() throws {
        let empty = TandemSnapshotState(
            appliedIndex: 0, appliedTerm: 0, timeMs: 0, idempotency: IdempotencyTable(ttlMs: 1_000),
            digest: ApplyDigestState(ApplyDigest()))
        assertSame(empty, try TandemSnapshotState.decode(empty.encoded()))
    }

    /// Rewrites the length and checksum so that a mutated body reaches the parser instead of the checksum check.
    private func reseal(_ bytes: inout [UInt8]) {
        guard bytes.count >= TandemSnapshotState.headerBytes + TandemSnapshotState.checksumBytes else { return }
        let bodyLength = UInt64(bytes.count - TandemSnapshotState.headerBytes - TandemSnapshotState.checksumBytes)
        withUnsafeBytes(of: bodyLength.littleEndian) { bytes.replaceSubrange(10..<18, with: $0) }
        let end = bytes.count - TandemSnapshotState.checksumBytes
        let sum = TandemSnapshotState.checksum(bytes[..<end])
        withUnsafeBytes(of: sum.littleEndian) { bytes.replaceSubrange(end..., with: $0) }
    }

    private func refusal(_ bytes: [UInt8]) -> String? {
        do {
            _ = try TandemSnapshotState.decode(bytes)
            return nil
        } catch {
            return error.description
        }
    }

    func testDamagedOrInconsistentBytesAreRefusedWithAReason() {
        let good = sampleState().encoded()
        XCTAssertNil(refusal(good))
        XCTAssertEqual(refusal([]), "0 bytes are too few for a snapshot state")
        var magic = good
        magic[0] = UInt8(ascii: "X")
        XCTAssertEqual(refusal(magic), "the bytes do not start with the snapshot state magic")
        var version = good
        version[8] = 2
        XCTAssertEqual(refusal(version), "format version 2 is not the supported 1")
        XCTAssertEqual(
            refusal(Array(good.dropLast())),
            "the body length \(good.count - 26) does not match the \(good.count - 1) bytes")
        var flipped = good
        flipped[40] ^= 0x10
        XCTAssertEqual(refusal(flipped), "the checksum does not match: the snapshot state is corrupt")
        var trailing = Array(good.dropLast(8)) + [0]
        trailing += [UInt8](repeating: 0, count: 8)
        reseal(&trailing)
        XCTAssertEqual(refusal(trailing), "1 bytes follow the snapshot state")
        // Consistent on their own, impossible together: keys recorded beyond the applied index.
        var state = sampleState()
        var beyond = state.encoded()
        withUnsafeBytes(of: UInt64(1_020).littleEndian) { beyond.replaceSubrange(18..<26, with: $0) }
        reseal(&beyond)
        XCTAssertEqual(refusal(beyond), "the digest index 1030 is beyond 1020")
        state.digest = ApplyDigestState(value: 1, index: 10, lastCompletedBlock: nil)
        var keysBeyond = state.encoded()
        withUnsafeBytes(of: UInt64(1_020).littleEndian) { keysBeyond.replaceSubrange(18..<26, with: $0) }
        reseal(&keysBeyond)
        XCTAssertEqual(refusal(keysBeyond), "an idempotency key from index 1030 is beyond 1020")
    }

    func testAStoredResponseThatCouldSplitAHeaderIsRefused() {
        var table = IdempotencyTable(ttlMs: 60_000)
        var headers = HTTPHeaders()
        headers.add(name: "X-Safe", value: "AAAA")
        table.record(
            command: command(key: "k"), index: 1,
            response: AppliedResponse(status: 200, reason: "OK", headers: headers, body: []), timeMs: 1)
        let state = TandemSnapshotState(
            appliedIndex: 1, appliedTerm: 1, timeMs: 1, idempotency: table, digest: ApplyDigestState(ApplyDigest()))
        var bytes = state.encoded()
        let value = Array("AAAA".utf8)
        let at = bytes.indices.first { bytes[$0..<min($0 + 4, bytes.count)].elementsEqual(value) }!
        bytes.replaceSubrange(at..<(at + 4), with: Array("A\r\nB".utf8))
        reseal(&bytes)
        XCTAssertEqual(refusal(bytes), "a stored header field is malformed")
    }

    func testRandomMutationsNeverTrapAndWhateverDecodesIsStable() throws {
        let good = sampleState().encoded()
        var generator = SplitMix(state: 0x5EED)
        var parserRefusals = 0
        var accepted = 0
        var checksumRefusals = 0
        for round in 0..<3_000 {
            var bytes = good
            for _ in 0...Int.random(in: 0...3, using: &generator) {
                let position = Int.random(in: 0..<max(1, bytes.count), using: &generator)
                switch Int.random(in: 0..<6, using: &generator) {
                case 0: bytes[position] ^= UInt8.random(in: 1...255, using: &generator)
                case 1: bytes[position] = [0x00, 0xFF, 0x7F, 0x80][Int.random(in: 0..<4, using: &generator)]
                case 2:
                    bytes.removeSubrange(
                        position..<min(bytes.count, position + Int.random(in: 1...16, using: &generator)))
                case 3:
                    bytes.insert(
                        contentsOf: (0..<Int.random(in: 1...9, using: &generator)).map { _ in
                            UInt8.random(in: 0...255, using: &generator)
                        }, at: position)
                case 4: bytes = Array(bytes.prefix(position))
                default:
                    // A huge length or count where a small one was.
                    let end = min(bytes.count, position + 8)
                    bytes.replaceSubrange(position..<end, with: [UInt8](repeating: 0xFF, count: end - position))
                }
                if bytes.isEmpty { break }
            }
            let resealed = round % 4 != 0
            if resealed { reseal(&bytes) }
            do {
                let state = try TandemSnapshotState.decode(bytes)
                accepted += 1
                // Whatever decodes is a state in its own right: it encodes and decodes to itself.
                assertSame(state, try TandemSnapshotState.decode(state.encoded()))
            } catch {
                if error.description.hasPrefix("the checksum") { checksumRefusals += 1 } else { parserRefusals += 1 }
            }
        }
        XCTAssertGreaterThan(parserRefusals, 1_000, "the mutations reached the parser")
        XCTAssertGreaterThan(checksumRefusals, 100, "unsealed damage is caught by the checksum")
        XCTAssertGreaterThan(accepted, 0, "some mutations (a fingerprint, an expiry) are still a valid state")
    }
}
