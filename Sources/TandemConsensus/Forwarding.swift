// Forwarding: a follower passes its clients' proposals to the leader, and the leader answers each one once.
//
// The contract that keeps a forwarded write from being appended twice or reported wrongly:
// - The follower keeps every forward it has no answer for (`PendingForward`), resends it to the same leader in the
//   same term when the link comes back or when no answer came for `forwardResendIntervalMs`, and gives up after
//   `forwardPatienceMs` or when the leader or the term changes. Giving up reports the proposal as *unknown*: an
//   earlier copy may have been appended and may still commit (the applied entry carries the proposal id, so a
//   waiting client still learns of it).
// - The leader remembers the outcome of every forward it answered for `forwardOutcomeRetentionMs`, several times
//   the sender's patience, so a resend always finds the original answer instead of being appended again. The
//   table is bounded: when it is full of outcomes younger than the retention, new forwards are refused
//   (overloaded, definitely not appended) rather than an outcome being forgotten early.
// - A refusal is definite only when a single copy was ever handed to the transport. After a resend, a refusal
//   may come from a node that restarted in the same term and forgot that it appended an earlier copy: that is
//   reported as unknown, never as a refusal the client could take for "not written".

extension RaftConfig {
    /// A forward unanswered this long is sent again to the same leader.
    public var forwardResendIntervalMs: Int64 { max(3 * heartbeatIntervalMs, 100) }
    /// A forward unanswered this long is given up (its outcome reported unknown).
    public var forwardPatienceMs: Int64 { 2 * electionTimeoutMs }
    /// How long a leader remembers the outcome of a forward it answered. Invariant: well above the patience.
    public var forwardOutcomeRetentionMs: Int64 { 4 * forwardPatienceMs }
    /// How many forward outcomes a leader remembers at most.
    public var forwardOutcomeCapacity: Int { max(4 * maxPendingForwards, 1024) * 8 }
}

/// A proposal forwarded to the leader and not answered yet.
struct PendingForward: Sendable {
    var proposal: ForwardedProposal
    var leader: NodeID
    var term: UInt64
    var firstSentMs: Int64
    var lastSentMs: Int64
    /// Copies handed to the transport. Above one, an earlier copy may have reached (and been appended by) the leader.
    var attempts: Int
}

/// The outcomes a leader gave to forwarded proposals, oldest first, kept for a retention time and bounded in count.
struct ForwardOutcomeTable: Sendable {
    private var outcomes: [ProposalID: ProposalOutcome] = [:]
    private var order: [(id: ProposalID, atMs: Int64)] = []
    private var head = 0
    let capacity: Int
    let retentionMs: Int64

    init(capacity: Int, retentionMs: Int64) {
        precondition(capacity > 0 && retentionMs > 0)
        self.capacity = capacity
        self.retentionMs = retentionMs
    }

    var count: Int { outcomes.count }

    subscript(id: ProposalID) -> ProposalOutcome? { outcomes[id] }

    /// Forgets outcomes older than the retention; returns whether there is room for one more.
    mutating func makeRoom(nowMs: Int64) -> Bool {
        while head < order.count && nowMs - order[head].atMs >= retentionMs {
            outcomes.removeValue(forKey: order[head].id)
            head += 1
        }
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        return outcomes.count < capacity
    }

    mutating func insert(_ outcome: ProposalOutcome, for id: ProposalID, nowMs: Int64) {
        precondition(outcomes[id] == nil, "a forward is answered once; a repeat gets the recorded outcome")
        precondition(outcomes.count < capacity, "call makeRoom first: the table never forgets an outcome early")
        outcomes[id] = outcome
        order.append((id, nowMs))
    }
}

extension RaftNode {
    /// Queues `proposal` for the leader (the caller checked there is one) and remembers it until answered.
    mutating func forward(_ proposal: ForwardedProposal, to leader: NodeID) {
        pendingForwards[proposal.id] = PendingForward(
            proposal: proposal, leader: leader, term: term, firstSentMs: nowMs, lastSentMs: nowMs, attempts: 1)
        outgoingForwards[leader, default: []].append(proposal)
    }

    /// The leader's side: append each forwarded proposal once; a repeat gets the recorded outcome.
    mutating func onProposalForward(_ forward: ProposalForward) {
        var outcomes: [ProposalID: ProposalOutcome] = [:]
        for proposal in forward.proposals {
            if let known = forwardOutcomes[proposal.id] {
                outcomes[proposal.id] = known  // A duplicate: the same fate as the original, never a second append.
                continue
            }
            guard role == .leader, forward.term == term else {
                // Not the leader the sender meant. Not recorded: this node never appended it in this life, and a
                // sender that resent it treats this refusal as "unknown" (we may have appended it before a restart).
                outcomes[proposal.id] = .rejected(.noLeader)
                continue
            }
            guard forwardOutcomes.makeRoom(nowMs: nowMs) else {
                outcomes[proposal.id] = .rejected(.overloaded)  // Not recorded either: nothing was appended.
                continue
            }
            let outcome: ProposalOutcome
            do throws(ProposalError) {
                let placed = try appendProposal(proposal.data, id: proposal.id)
                outcome = .accepted(index: placed.index, term: placed.term)
            } catch {
                outcome = .rejected(error)
            }
            forwardOutcomes.insert(outcome, for: proposal.id, nowMs: nowMs)
            outcomes[proposal.id] = outcome
        }
        send(
            .proposalForwardResponse(
                ProposalForwardResponse(from: config.id, to: forward.from, term: term, outcomes: outcomes)))
    }

    /// The sender's side: an answer arrived.
    mutating func onProposalForwardResponse(_ response: ProposalForwardResponse) {
        for (id, outcome) in response.outcomes.sorted(by: { $0.key.sequence < $1.key.sequence }) {
            guard let pending = pendingForwards[id], pending.leader == response.from else { continue }
            pendingForwards[id] = nil
            switch outcome {
            case .accepted(let index, let term): self.pending.acceptedProposals.append((id, index, term))
            case .rejected(let error) where pending.attempts == 1: self.pending.rejectedProposals.append((id, error))
            case .rejected: self.pending.unknownProposals.append(id)
            }
        }
    }

    /// Every tick: resends what went unanswered, and gives up what outlived its leader, its term or the patience.
    mutating func tickForwards() {
        guard !pendingForwards.isEmpty else { return }
        for (id, pending) in pendingForwards.sorted(by: { $0.key.sequence < $1.key.sequence }) {
            if pending.leader != leader || pending.term != term
                || nowMs - pending.firstSentMs >= config.forwardPatienceMs
            {
                pendingForwards[id] = nil
                self.pending.unknownProposals.append(id)
            } else if nowMs - pending.lastSentMs >= config.forwardResendIntervalMs {
                resend(id)
            }
        }
    }

    private mutating func resend(_ id: ProposalID) {
        guard var pending = pendingForwards[id] else { return }
        pending.attempts += 1
        pending.lastSentMs = nowMs
        pendingForwards[id] = pending
        outgoingForwards[pending.leader, default: []].append(pending.proposal)
    }

    /// The link to `peer` is (again) up: a forward sent on the old link may have been lost with it, so every
    /// forward waiting on `peer` as the leader of this term goes again at once.
    public mutating func linkUp(to peer: NodeID, nowMs: Int64) {
        observeClock(nowMs)
        defer { checkInvariants() }
        if peer == leader { leaderLinkClosedAtMs = nil }
        for (id, pending) in pendingForwards.sorted(by: { $0.key.sequence < $1.key.sequence })
        where pending.leader == peer && pending.term == term && leader == peer {
            resend(id)
        }
    }

    /// The transport refused `message` (no link, or its buffer is full): nothing of it was delivered. A forward's
    /// copy that never left does not count as an attempt; one that was its only copy is refused for certain.
    public mutating func notDelivered(_ message: Message, nowMs: Int64) {
        observeClock(nowMs)
        defer { checkInvariants() }
        guard case .proposalForward(let forward) = message else { return }
        for proposal in forward.proposals {
            guard var pending = pendingForwards[proposal.id] else { continue }
            pending.attempts -= 1
            if pending.attempts == 0 {
                pendingForwards[proposal.id] = nil
                self.pending.rejectedProposals.append((proposal.id, .noLeader))
            } else {
                pendingForwards[proposal.id] = pending
            }
        }
    }
}
