import Foundation
import XCTest

@testable import TandemOverload

/// Cost figures for the report, not specifications: run with `TANDEM_OVERLOAD_FIGURES=1 swift test -c release
/// -Xswiftc -enable-testing --filter CostFigures`. Skipped otherwise so the suite stays fast.
final class CostFigures: XCTestCase {
    private func residentKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    private func seconds(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    func testPrintCostFigures() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["TANDEM_OVERLOAD_FIGURES"] != nil)
        let keys = (0..<400_000).map { "2001:db8:85a3::8a2e:370:\(String($0, radix: 16))" }
        let before = residentKiB()
        var rate = GCRARateLimiter(configuration: .init(count: 100, periodMs: 1000, keyCapacity: 100_000))
        var allowed = 0
        let checks = 2_000_000
        let gcraSeconds = seconds {
            for step in 0..<checks where rate.check(key: keys[step % keys.count], nowMs: Int64(step / 1000)).isAllowed {
                allowed += 1
            }
        }
        print(
            "GCRA: \(Int(Double(checks) / gcraSeconds)) checks/s over 400k distinct keys in a 100k table, allowed \(allowed), table growth \(residentKiB() - before) KiB, evictions idle \(rate.idleEvictionCount) overflow \(rate.overflowCheckCount)"
        )

        var hot = GCRARateLimiter(configuration: .init(count: 100, periodMs: 1000, keyCapacity: 100_000))
        var hotAllowed = 0
        let hotSeconds = seconds {
            for step in 0..<checks where hot.check(key: keys[step % 1000], nowMs: Int64(step / 1000)).isAllowed {
                hotAllowed += 1
            }
        }
        print("GCRA: \(Int(Double(checks) / hotSeconds)) checks/s over 1000 known keys, allowed \(hotAllowed)")

        let beforeFresh = residentKiB()
        var fresh = GCRARateLimiter(configuration: .init(count: 100, periodMs: 1000, keyCapacity: 100_000))
        for step in 0..<100_000 {
            _ = fresh.check(key: "2001:db8:85a3::8a2e:370:\(String(step, radix: 16))", nowMs: 0)
        }
        print(
            "GCRA: a full table of 100k keys of 28-30 bytes, each its own string, costs \(residentKiB() - beforeFresh) KiB"
        )

        var queue = BoundedCoDelQueue<Int>(capacity: 10_000)
        var served = 0
        let queueSeconds = seconds {
            for tick in 0..<1_000_000 {
                _ = queue.enqueue(tick, nowMicros: Int64(tick) * 10)
                _ = queue.enqueue(tick, nowMicros: Int64(tick) * 10)
                if queue.dequeue(nowMicros: Int64(tick) * 10).element != nil { served += 1 }
            }
        }
        print(
            "BoundedCoDelQueue: \(Int(3_000_000 / queueSeconds)) operations/s at 2x overload, served \(served), dropping \(queue.controller.isDropping) count \(queue.controller.dropCount)"
        )

        var limiter = AdaptiveConcurrencyLimit(seed: 3)
        let limiterSeconds = seconds {
            for step in 0..<3_000_000 {
                if limiter.tryAcquire() {
                    limiter.onSample(
                        rttMicros: Int64(10_000 + step % 977), inflightAtStart: limiter.inflight, didDrop: false)
                    limiter.release()
                }
            }
        }
        print(
            "AdaptiveConcurrencyLimit: \(Int(3_000_000 / limiterSeconds)) acquire+sample+release/s, limit \(limiter.limit)"
        )
    }
}
