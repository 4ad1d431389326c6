// Safety checks run after every event: election safety, log matching, leader completeness, state machine safety.

import TandemConsensus
import TandemLinearizability

/// An entry's identity for log matching: Raft promises that (index, term) determines the entry and its prefix.
struct EntryKey: Hashable {
    var index: UInt64
    var term: UInt64
}

extension Simulation {
    /// Election safety, role history and commit-index monotonicity, after any input to a node.
    func observe(_ index: Int) {
        guard let raft = nodes[index].raft else { return }
        let role = raft.currentRole, term = raft.currentTerm
        if role != nodes[index].lastRole || term != nodes[index].lastTerm {
            roleHistory.append((nowMs, nodes[index].id, role, term))
            note("\(nodes[index].id) \(role) term \(term)")
            nodes[index].lastRole = role
            nodes[index].lastTerm = term
            if role == .leader { onNewLeader(index, term: term) }
        }
        report.highestTerm = max(report.highestTerm, term)
        let commit = raft.commitIndex
        if commit < nodes[index].lastCommitSeen {
            fail("\(nodes[index].id) commit index went back from \(nodes[index].lastCommitSeen) to \(commit)")
            return
        }
        // Entries through the log base came with a snapshot (checked when installed) or were seen before compaction.
        var next = max(nodes[index].lastCommitSeen, raft.logBase.index) + 1
        while next <= commit && report.violation == nil {
            guard let entry = raft.entry(at: next) else {
                fail("\(nodes[index].id) commits index \(next) that is not in its log")
                return
            }
            registerCommitted(entry, by: index)
            next += 1
        }
        nodes[index].lastCommitSeen = commit
    }

    func onNewLeader(_ index: Int, term: UInt64) {
        if let other = leaderOfTerm[term], other != index {
            fail("election safety: \(nodes[other].id) and \(nodes[index].id) both lead term \(term)")
            return
        }
        leaderOfTerm[term] = index
        // Membership: only a voter leads, and the voters that elected it (a majority of its configuration) share a
        // voter with every majority of the latest committed configuration: no two disjoint majorities can decide.
        let configuration = nodes[index].raft!.configuration
        if !configuration.isVoter(nodes[index].id) {
            fail("\(nodes[index].id) leads term \(term) but is not a voter of its configuration \(configuration)")
            return
        }
        if !configuration.majoritiesIntersect(committedConfiguration) {
            fail(
                "membership: \(nodes[index].id) leads term \(term) with \(configuration), whose majorities may miss "
                    + "those of the committed \(committedConfiguration)")
            return
        }
        // Leader completeness: every entry committed so far in an earlier term is in the new leader's log.
        let raft = nodes[index].raft!
        let base = raft.logBase
        if base.index > 0 && (base.index > committedLog.count || committedLog[Int(base.index) - 1].term != base.term) {
            fail(
                "leader completeness: \(nodes[index].id), leader of term \(term), has a log base \(base) never committed"
            )
            return
        }
        for committed in committedLog[Int(base.index)...] where committed.term < term {
            if raft.entry(at: committed.index) != committed {
                fail(
                    "leader completeness: \(nodes[index].id), leader of term \(term), lacks committed entry "
                        + "\(committed.index) of term \(committed.term)")
                return
            }
        }
    }

    /// Committed entries never change, and later leaders hold them.
    func registerCommitted(_ entry: Entry, by index: Int) {
        let position = Int(entry.index) - 1
        if position < committedLog.count {
            if committedLog[position] != entry {
                fail(
                    "committed entry \(entry.index) changed: \(describe(committedLog[position])) at one node, "
                        + "\(describe(entry)) at \(nodes[index].id)")
            }
            return
        }
        precondition(position == committedLog.count, "commit indexes are contiguous")
        committedLog.append(entry)
        if entry.kind == .configuration {
            guard let configuration = entry.configuration else {
                fail("committed configuration entry \(entry.index) does not decode")
                return
            }
            committedConfiguration = configuration
            committedConfigurations.append((entry.index, configuration))
            report.configurationsCommitted += 1
            note("configuration \(configuration) committed at \(entry.index)")
        }
        report.committedEntries = committedLog.count
        for other in nodes.indices {
            guard let raft = nodes[other].raft, raft.currentRole == .leader, raft.currentTerm > entry.term,
                entry.index > raft.logBase.index
            else {
                continue
            }
            if raft.entry(at: entry.index) != entry {
                fail(
                    "leader completeness: \(nodes[other].id) (term \(raft.currentTerm)) lacks committed entry \(entry.index)"
                )
            }
        }
    }

    /// Messages sent while a node's persistence runs promise nothing about its disk: heartbeats and their answers
    /// only, in the term its disk already holds.
    func checkFreeOfDisk(_ index: Int, _ messages: [Message]) {
        let durableTerm = nodes[index].disk.hardState.term
        for message in messages {
            switch message {
            case .heartbeat(let beat) where beat.term == durableTerm: continue
            case .heartbeatResponse(let answer) where answer.term == durableTerm: continue
            default:
                fail("\(nodes[index].id) sent \(message) while its persistence ran (durable term \(durableTerm))")
                return
            }
        }
    }

    /// Log matching, checked on every entry a node hands out for persistence.
    func checkReady(_ index: Int, _ ready: Ready) {
        let raft = nodes[index].raft!
        for message in ready.messagesBeforePersist {
            switch message {
            case .appendEntries, .heartbeat: continue
            default:
                fail("\(nodes[index].id) may send \(message) before its persistence: only a leader's appends may")
                return
            }
        }
        if !ready.mustSync && (!ready.entriesToPersist.isEmpty || ready.truncateFromIndex != nil) {
            fail("\(nodes[index].id): a Ready with entries to persist must be synced")
            return
        }
        let base = raft.logBase
        for entry in ready.entriesToPersist {
            let previous = entry.index - 1 == base.index ? nil : raft.entry(at: entry.index - 1)
            let prevTerm = entry.index - 1 == base.index ? base.term : (previous?.term ?? UInt64.max)
            if let previous, previous.timeMs > entry.timeMs {
                fail("Tandem-Time went backwards at index \(entry.index): \(previous.timeMs) then \(entry.timeMs)")
                return
            }
            if entry.kind == .configuration {
                guard let configuration = entry.configuration else {
                    fail("\(nodes[index].id) persists an undecodable configuration entry at \(entry.index)")
                    return
                }
                if let previous = raft.configuration(at: entry.index - 1),
                    !Simulation.isSingleServerStep(from: previous, to: configuration)
                {
                    fail(
                        "membership: entry \(entry.index) changes \(previous) to \(configuration), more than one server"
                    )
                    return
                }
            }
            let key = EntryKey(index: entry.index, term: entry.term)
            if let known = entriesSeen[key] {
                if known.entry != entry || known.prevTerm != prevTerm {
                    fail("log matching: two different entries (or prefixes) at index \(entry.index) term \(entry.term)")
                    return
                }
            } else {
                entriesSeen[key] = (entry, prevTerm)
            }
        }
    }

    /// State machine safety: every node applies, at each index, the one committed entry.
    func checkApply(_ index: Int, _ entry: Entry) {
        let expectedIndex = nodes[index].app.appliedIndex + 1
        guard entry.index == expectedIndex else {
            fail("\(nodes[index].id) applies index \(entry.index), expected \(expectedIndex)")
            return
        }
        let position = Int(entry.index) - 1
        if position < committedLog.count {
            if committedLog[position] != entry {
                fail(
                    "\(nodes[index].id) applies \(describe(entry)) where \(describe(committedLog[position])) committed")
            }
        } else {
            registerCommitted(entry, by: index)
        }
    }

    /// Whether `next` differs from `previous` in the standing of exactly one node (added as a learner, promoted, or
    /// removed): the single-server rule that keeps majorities of consecutive configurations intersecting.
    static func isSingleServerStep(from previous: ClusterConfiguration, to next: ClusterConfiguration) -> Bool {
        func standing(_ c: ClusterConfiguration, _ id: NodeID) -> Int { c.isVoter(id) ? 2 : c.isLearner(id) ? 1 : 0 }
        let changed = Set(previous.members + next.members).filter { standing(previous, $0) != standing(next, $0) }
        return changed.count == 1
    }

    /// The end of a run: logs agree pairwise, applications agree, and the clients' history is linearizable.
    func finalChecks() {
        checkLogsPairwise()
        guard report.violation == nil else { return }
        // Nodes removed (or never added) stop receiving the log: only the final configuration's members must agree.
        let states = convergenceMembers().map { nodes[$0].app.values }
        if let first = states.first, states.contains(where: { $0 != first }) {
            fail("applications diverged after convergence")
            return
        }
        finishClientOperations()
        let operations = finalHistory()
        let result = checkLinearizability(operations, timeoutMs: 20_000, maxSteps: 20_000_000)
        report.linearizability = result
        if case .notLinearizable(let key, let explanation) = result {
            fail("history not linearizable on key \(key): \(explanation)")
            return
        }
        let lost = lostAcknowledgedWrites(operations, kv: states.first ?? [:], counters: [:])
        if let first = lost.first {
            fail("acknowledged write lost: \(first.operation.input) \(first.reason)")
        }
    }

    func checkLogsPairwise() {
        for a in nodes.indices {
            for b in nodes.indices where a < b {
                guard let left = nodes[a].raft, let right = nodes[b].raft else { continue }
                // Below either log's base there is nothing to compare (the snapshots were checked when installed).
                let floor = max(left.logBase.index, right.logBase.index)
                var index = min(left.lastIndex, right.lastIndex)
                while index > floor, left.entry(at: index)?.term != right.entry(at: index)?.term { index -= 1 }
                while index > floor {
                    if left.entry(at: index) != right.entry(at: index) {
                        fail("log matching: \(nodes[a].id) and \(nodes[b].id) differ at \(index) below a shared entry")
                        return
                    }
                    index -= 1
                }
            }
        }
    }

    func describe(_ entry: Entry) -> String {
        "[\(entry.index)@\(entry.term) \(entry.kind) \(entry.proposal.map { "\($0)" } ?? "-")]"
    }
}
