import Foundation
import XCTest

@testable import TandemStorage

/// A small measurement of the hot path, printed for BENCHMARKS.md: append a batch, sync, repeat.
final class ThroughputTests: XCTestCase {
    func testGroupCommitThroughputFor256ByteEntries() throws {
        for batchSize in [1, 64] {
            let directory = makeTemporaryDirectory(self)
            let (log, _) = try XCTUnwrap(openLog(directory))
            let payload = [UInt8](repeating: 0xAB, count: 256)
            var nextIndex: UInt64 = 1
            var syncLatenciesNs: [UInt64] = []
            let startNs = DispatchTime.now().uptimeNanoseconds
            var elapsedNs: UInt64 = 0
            while elapsedNs < 300_000_000 {
                let batch = (0..<UInt64(batchSize)).map { WALEntry(index: nextIndex + $0, term: 1, payload: payload) }
                nextIndex += UInt64(batchSize)
                try log.append(batch)
                let syncStartNs = DispatchTime.now().uptimeNanoseconds
                try log.sync()
                let nowNs = DispatchTime.now().uptimeNanoseconds
                syncLatenciesNs.append(nowNs - syncStartNs)
                elapsedNs = nowNs - startNs
            }
            try log.close()
            let seconds = Double(elapsedNs) / 1e9
            let records = Double(nextIndex - 1)
            syncLatenciesNs.sort()
            let p50Us = syncLatenciesNs[syncLatenciesNs.count / 2] / 1_000
            let p99Us = syncLatenciesNs[syncLatenciesNs.count * 99 / 100] / 1_000
            print(
                String(
                    format: "WAL batch %2d x 256 B: %8.0f records/s, %6.0f syncs/s", batchSize,
                    records / seconds, Double(syncLatenciesNs.count) / seconds),
                "(fdatasync p50 \(p50Us) us, p99 \(p99Us) us)")
            XCTAssertEqual(log.syncCount, syncLatenciesNs.count, "exactly one fsync per batch")
        }
    }

    func testAppendingWithoutSyncIsCheapPerEntry() throws {
        let directory = makeTemporaryDirectory(self)
        let (log, _) = try XCTUnwrap(openLog(directory))
        let payload = [UInt8](repeating: 0xCD, count: 256)
        let count = 50_000
        let startNs = DispatchTime.now().uptimeNanoseconds
        for batch in 0..<(count / 64) {
            try log.append((0..<64).map { WALEntry(index: UInt64(batch * 64 + $0 + 1), term: 1, payload: payload) })
        }
        try log.sync()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - startNs) / 1e9
        print(
            String(
                format: "WAL append+encode+CRC+write of %d x 256 B entries, one sync: %.0f entries/s, %.0f MB/s",
                count - count % 64, Double(count - count % 64) / seconds,
                Double(log.sizeBytes) / seconds / 1e6))
        XCTAssertEqual(log.syncCount, 1)
        try log.close()
    }
}
