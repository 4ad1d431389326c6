// Membership changes as an operator (or an autopilot) makes them: through the leader's public API, one at a time,
// while the rest of the chaos goes on. The checks that keep them honest live in Simulation+Checks.swift: only
// voters lead, every configuration entry is one single-server step from the one before it in the log, and every
// new leader's configuration has majorities that meet those of the latest committed configuration.

import TandemConsensus

extension Simulation {
    /// Proposes `change` at the live leader with the highest term and carries out the effects. Returns the entry's
    /// index, or why the leader refused (`.notLeader` when there is none).
    @discardableResult
    public func proposeMembershipChange(_ change: MembershipChange) -> Result<UInt64, MembershipError> {
        guard let leader = leaderID else { return .failure(.notLeader) }
        let index = self.index(of: leader)
        do throws(MembershipError) {
            let entry = try nodes[index].raft!.proposeMembershipChange(change, nowMs: localMs(index))
            report.membershipProposed += 1
            note("\(leader) proposes \(change) at \(entry)")
            afterStep(index)
            return .success(entry)
        } catch {
            report.membershipRefused += 1
            note("\(leader) refuses \(change): \(error)")
            return .failure(error)
        }
    }

    /// Whether every live member of the leader's configuration holds `index` in its log, for scripted runs that
    /// wait for a learner to catch up before promoting it.
    public func leaderCommitted(_ index: UInt64) -> Bool {
        guard let leader = leaderID, let raft = node(leader) else { return false }
        return raft.commitIndex >= index
    }

    /// A random change at the current leader: add a node outside the configuration as a learner, promote a
    /// learner, or remove a member (the leader itself now and then), never below `options.minimumVoters`.
    func randomMembershipChange() {
        defer { scheduleNext(.membershipChange, rate: options.membershipChangesPerSecond) }
        guard chaosActive, let leader = leaderID, let raft = node(leader) else { return }
        let configuration = raft.configuration
        let outside = nodes.map(\.id).filter { !configuration.contains($0) }
        var choices: [MembershipChange] = []
        choices += outside.map { .addLearner($0) }
        choices += configuration.learners.map { .promote($0) }
        choices += configuration.learners.map { .remove($0) }
        if configuration.voters.count > options.minimumVoters {
            choices += configuration.voters.map { .remove($0) }
        }
        guard let change = choices.randomElement(using: &rng) else { return }
        proposeMembershipChange(change)
    }
}
