import Foundation
import Glibc
import TandemLinearizability
import XCTest

/// A concurrent read/write history on a few keys, with linearizable reads against all three nodes, through a
/// leader kill and its restart, must pass the quorum core's linearizability checker.
final class ClusterLinearizabilityTests: ClusterTestCase {
    func testHistoryThroughALeaderKillIsLinearizable() throws {
        try startCluster()
        let leader = try XCTUnwrap(waitForLeader())
        let ports = replicas.map(\.clientPort)
        let recorder = HistoryRecorder()
        let stop = Flag()
        let group = DispatchGroup()
        recorder.startClients(4, keys: ["a", "b", "c"], ports: ports, until: stop, in: group)
        usleep(2_000_000)
        crash(leader)
        usleep(3_000_000)
        try start(leader)
        usleep(2_000_000)
        stop.set()
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)

        let history = recorder.operations
        let completedWrites = history.filter {
            if case .put = $0.input, $0.output != nil { return true } else { return false }
        }.count
        let completedReads = history.filter {
            if case .get = $0.input, $0.output != nil { return true } else { return false }
        }.count
        XCTAssertGreaterThan(completedWrites, 20, "the history must hold real work")
        XCTAssertGreaterThan(completedReads, 20, "the history must hold real work")
        let verdict = checkLinearizability(history, timeoutMs: 60_000)
        guard case .linearizable = verdict else {
            let empty = recorder.refused.filter { $0.hasPrefix("EMPTY") }
            // The value a bad read returned, if any, and what happened to the write that carried it.
            var carried: [String] = []
            if case .notLinearizable(_, let explanation) = verdict,
                let range = explanation.range(of: #"-> "[^"]*""#, options: .regularExpression)
            {
                let value = explanation[range].dropFirst(4).dropLast()
                carried = recorder.refused.filter { $0.hasPrefix("\(value):") }
            }
            return XCTFail("not linearizable: \(verdict)\nempty reads: \(empty)\nits write: \(carried)")
        }
        guard let dump = waitForConvergence(seconds: 30) else {
            return XCTFail("the replicas did not converge:\n\(divergenceReport())")
        }
        let state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let kv = (state["kv"] as? [String: String]) ?? [:]
        guard case .linearizable = checkFinalState(history, kv: kv, counters: [:], timeoutMs: 60_000) else {
            return XCTFail("the final state is not explained by the history")
        }
    }
}

final class Flag: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Records operations with call and return times on one monotonic clock. Writes refused definitely (503: never
/// appended) are left out; writes whose fate is unknown (504, a broken connection) are kept with no output.
final class HistoryRecorder: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var recorded: [KVOperation] = []
    /// Writes answered 503 (left out of the history as never appended), for diagnosing a violation.
    private(set) var refused: [String] = []
    private let start = DispatchTime.now().uptimeNanoseconds

    private func nowMs() -> Int64 { Int64((DispatchTime.now().uptimeNanoseconds - start) / 1_000_000) }

    var operations: [KVOperation] { lock.withLock { recorded } }

    /// Starts `count` clients, each writing or reading (linearizable) a random key of `keys` on a random node of
    /// `ports`, one operation at a time, until `stop` is set.
    func startClients(_ count: Int, keys: [String], ports: [UInt16], until stop: Flag, in group: DispatchGroup) {
        for client in 0..<count {
            DispatchQueue.global().async(group: group) {
                var rng = SystemRandomNumberGenerator()
                var sequence = 0
                while !stop.isSet {
                    sequence += 1
                    let key = keys.randomElement(using: &rng)!
                    let port = ports.randomElement(using: &rng)!
                    if Bool.random(using: &rng) {
                        self.put(client: client, key: key, value: "c\(client)-\(sequence)", port: port)
                    } else {
                        self.get(client: client, key: key, port: port)
                    }
                }
            }
        }
    }

    private func add(_ operation: KVOperation) { lock.withLock { recorded.append(operation) } }

    func put(client: Int, key: String, value: String, port: UInt16) {
        let call = nowMs()
        let response = try? httpRequest(port: port, method: "PUT", path: "/kv/\(key)", body: value, timeoutSeconds: 8)
        let input = KVInput.put(key: key, value: value)
        if let trace = ProcessInfo.processInfo.environment["TANDEM_TEST_PUT_TRACE"] {
            let line =
                "\(value) port \(port) [\(call), \(nowMs())] -> \(response.map { "\($0.status) \($0.bodyText.prefix(80))" } ?? "no answer")\n"
            lock.withLock {
                if let handle = FileHandle(forWritingAtPath: trace) {
                    handle.seekToEndOfFile()
                    handle.write(Data(line.utf8))
                    handle.closeFile()
                }
            }
        }
        switch response?.status {
        case 200?:
            add(KVOperation(clientID: client, input: input, output: .ok, callTimeMs: call, returnTimeMs: nowMs()))
        case 503?:
            lock.withLock { refused.append("\(value): \(response!.bodyText)") }
            return
        default: add(KVOperation(clientID: client, input: input, output: nil, callTimeMs: call, returnTimeMs: nil))
        }
    }

    func get(client: Int, key: String, port: UInt16) {
        let call = nowMs()
        guard
            let response = try? httpRequest(
                port: port, method: "GET", path: "/kv/\(key)", headers: [("Tandem-Consistency", "linearizable")],
                timeoutSeconds: 8)
        else { return }
        let returned = nowMs()
        let output: KVOutput
        if response.status == 200 && response.body.isEmpty {
            let headers = response.headers.map { "\($0.name): \($0.value)" }.joined(separator: "; ")
            lock.withLock { refused.append("EMPTY READ of \(key) on :\(port) at \(call): \(headers)") }
        }
        switch response.status {
        case 200: output = .value(response.bodyText)
        case 404: output = .value(nil)
        default: return  // a failed read observed nothing
        }
        add(
            KVOperation(
                clientID: client, input: .get(key: key), output: output, callTimeMs: call, returnTimeMs: returned))
    }
}
