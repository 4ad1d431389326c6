// Simulated clients: writes and reads through the core, recorded as a history for the linearizability checker.

import TandemConsensus
import TandemLinearizability

/// One client: at most one operation at a time.
struct SimClient {
    let id: Int
    /// Index into the history of the operation in progress, and the node it went to.
    var current: (operation: Int, node: Int)?
    var counter = 0
}

extension Simulation {
    func clientStep(_ client: Int) {
        guard clientsActive, clients[client].current == nil else { return }
        // Clients talk to members (as a load balancer would route them): a removed node no longer applies the log.
        let up = nodes.indices.filter {
            nodes[$0].isUp && nodes[$0].stalledUntilMicros <= nowMicros
                && nodes[$0].raft!.configuration.contains(nodes[$0].id)
        }
        guard let node = up.randomElement(using: &rng) else {
            queue.push(.clientStep(client: client), atMicros: nowMicros + 50_000)
            return
        }
        let key = options.keys[Int(rng.next() % UInt64(options.keys.count))]
        if rng.next() % 2 == 0 {
            startWrite(client, node: node, key: key)
        } else {
            startRead(client, node: node, key: key)
        }
        if clients[client].current != nil, let operation = clients[client].current?.operation {
            queue.push(
                .clientTimeout(client: client, operation: operation),
                atMicros: nowMicros + options.operationTimeoutMs * 1000)
        }
        pump(node)
    }

    func startWrite(_ client: Int, node: Int, key: String) {
        clients[client].counter += 1
        let value = "c\(client)-\(clients[client].counter)"
        let id = ProposalID(origin: nodes[node].id, sequence: nextSequence)
        nextSequence += 1
        do throws(ProposalError) {
            try nodes[node].raft!.propose(
                KVApp.encodePut(key: key, value: value), id: id,
                wallTimeMs: nowMs, nowMs: localMs(node))
        } catch {
            nextClientStep(client)  // Refused at once: nothing was appended, so nothing enters the history.
            return
        }
        history.append(
            KVOperation(
                clientID: client, input: .put(key: key, value: value), output: nil,
                callTimeMs: nowMs, returnTimeMs: nil))
        clients[client].current = (history.count - 1, node)
        pendingWrites[id] = client
    }

    func startRead(_ client: Int, node: Int, key: String) {
        let id = ReadID(origin: nodes[node].id, sequence: nextSequence)
        nextSequence += 1
        history.append(
            KVOperation(
                clientID: client, input: .get(key: key), output: nil, callTimeMs: nowMs,
                returnTimeMs: nil))
        clients[client].current = (history.count - 1, node)
        pendingReads[id] = client
        let mode: ReadMode = rng.next() % 2 == 0 ? .readIndex : .lease
        nodes[node].raft!.requestRead(id: id, mode: mode, nowMs: localMs(node))
    }

    func nextClientStep(_ client: Int) {
        clients[client].current = nil
        queue.push(.clientStep(client: client), atMicros: nowMicros + randomMicros(upToMs: options.clientThinkMs) + 1)
    }

    /// The origin node applied the client's write: acknowledge it.
    func writeApplied(_ id: ProposalID, at node: Int) {
        guard let client = pendingWrites.removeValue(forKey: id), let current = clients[client].current else { return }
        history[current.operation].output = .ok
        history[current.operation].returnTimeMs = nowMs
        report.acknowledgedWrites += 1
        nextClientStep(client)
    }

    /// The leader refused the forwarded write: it was never appended, so it leaves the history.
    func writeRejected(_ id: ProposalID) {
        guard let client = pendingWrites.removeValue(forKey: id), let current = clients[client].current else { return }
        excludedOperations.insert(current.operation)
        nextClientStep(client)
    }

    func readFailed(_ id: ReadID) {
        guard let client = pendingReads.removeValue(forKey: id), let current = clients[client].current else { return }
        excludedOperations.insert(current.operation)
        nextClientStep(client)
    }

    /// Serves confirmed reads whose index the application has reached.
    func serveWaitingReads(_ node: Int) {
        let applied = nodes[node].app.appliedIndex
        var still: [(id: ReadID, index: UInt64)] = []
        for read in nodes[node].waitingReads {
            guard read.index <= applied else {
                still.append(read)
                continue
            }
            guard let client = pendingReads.removeValue(forKey: read.id), let current = clients[client].current
            else { continue }
            guard case .get(let key) = history[current.operation].input else {
                preconditionFailure("read is not a get")
            }
            history[current.operation].output = .value(nodes[node].app.values[key])
            history[current.operation].returnTimeMs = nowMs
            report.servedReads += 1
            nextClientStep(client)
        }
        nodes[node].waitingReads = still
    }

    func clientTimeout(_ client: Int, _ operation: Int) {
        guard let current = clients[client].current, current.operation == operation else { return }
        abandon(client)
    }

    /// The client stops waiting: a write's outcome stays unknown, a read is dropped (it constrains nothing).
    func abandon(_ client: Int) {
        guard let current = clients[client].current else { return }
        if case .get = history[current.operation].input {
            excludedOperations.insert(current.operation)
            pendingReads = pendingReads.filter { $0.value != client }
        } else {
            report.unknownWrites += 1
            pendingWrites = pendingWrites.filter { $0.value != client }
        }
        nextClientStep(client)
    }

    func abandonClientOperations(on node: Int) {
        for client in clients.indices where clients[client].current?.node == node { abandon(client) }
    }

    func finishClientOperations() {
        for client in clients.indices where clients[client].current != nil { abandon(client) }
        clientsActive = false
    }

    func finalHistory() -> [KVOperation] {
        history.enumerated().filter { !excludedOperations.contains($0.offset) }.map(\.element)
    }
}
