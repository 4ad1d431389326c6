/// The node's log in memory, with the bookkeeping of what is committed, handed out for persistence and durable.
///
/// The entries start after `base`: what lies at or before it is covered by a snapshot the runtime keeps (or was
/// compacted away), and only its term is remembered. Every access goes through `offset` and `term(at:)`.
struct RaftLog {
    /// Invariant: `entries[k].index == offset + 1 + k`, and terms never decrease along the array (nor from the base).
    private(set) var entries: [Entry]
    /// The entry the log starts after. Invariant: `base.index <= persistedIndex` and `base.index <= handedOutIndex`:
    /// only entries that are durable and carried out are compacted, and an installed snapshot counts as both.
    private(set) var base: LogBase
    /// `Entry.timeMs` of the entry at the base when known (this node compacted it), else a lower bound of it: log
    /// time must not go backwards for a leader whose log holds no entry after the base.
    private(set) var baseTimeMs: Int64 = 0
    /// The index just before the first stored entry.
    var offset: UInt64 { base.index }
    /// Invariant: `handedOutIndex <= committedIndex <= lastIndex`.
    private(set) var committedIndex: UInt64
    /// The last index handed to the runtime to apply (in a Ready's `committedEntries`).
    /// Invariant: `handedOutIndex <= committedIndex`.
    private(set) var handedOutIndex: UInt64
    /// The last index known to be durable on this node's disk with the same content as `entries`.
    /// Invariant: `persistedIndex <= lastIndex` and `persistedIndex < unstableFromIndex`.
    private(set) var persistedIndex: UInt64
    /// The first index not yet handed to the runtime for persistence. Invariant: `unstableFromIndex <= lastIndex + 1`.
    private(set) var unstableFromIndex: UInt64
    /// Set when entries already handed out were replaced: the next Ready must truncate from here.
    private(set) var truncateFromIndex: UInt64?
    /// The configuration in force at the base.
    private(set) var baseConfiguration: ClusterConfiguration
    /// The configuration entries after the base, in index order: the last one is in force (appended is enough), and
    /// truncating it brings back the one before. Invariant: every index is in `offset + 1 ... lastIndex`.
    private(set) var configurations: [(index: UInt64, configuration: ClusterConfiguration)] = []

    /// `bootstrap` is the configuration at the base when the recovered state does not say.
    init(recovered: RecoveredState, bootstrap: ClusterConfiguration) {
        entries = recovered.entries
        base = recovered.base
        baseConfiguration = recovered.baseConfiguration ?? bootstrap
        let last = recovered.entries.last?.index ?? base.index
        // The base is committed by definition; a commit index written lazily (without an fsync) may lag it.
        let commit = max(recovered.hardState.commitIndex, base.index)
        precondition(commit <= last, "recovered commit index beyond the recovered log")
        precondition(recovered.handOutAfter >= base.index, "the app state restored must cover the log base")
        precondition(recovered.handOutAfter <= commit, "applied beyond commit on disk")
        var previousTerm = base.term
        for (k, entry) in entries.enumerated() {
            precondition(entry.index == base.index + UInt64(k) + 1, "recovered log is not contiguous from its base")
            precondition(entry.term >= previousTerm, "recovered log terms go down")
            previousTerm = entry.term
        }
        committedIndex = commit
        handedOutIndex = recovered.handOutAfter
        persistedIndex = last
        unstableFromIndex = last + 1
        for entry in entries { noteConfiguration(entry) }
        checkInvariants()
    }

    var lastIndex: UInt64 { offset + UInt64(entries.count) }

    // MARK: Configuration

    /// Replaces the configuration at the base of an empty, never compacted log (a node admitted to a cluster).
    mutating func replaceBaseConfiguration(_ configuration: ClusterConfiguration) {
        precondition(base.index == 0 && entries.isEmpty, "only an empty log takes an admitted configuration")
        baseConfiguration = configuration
    }

    /// The configuration in force: the last one in the log, committed or not.
    var configuration: ClusterConfiguration { configurations.last?.configuration ?? baseConfiguration }
    /// The index of the entry that holds `configuration` (the base's index when the log holds none after it).
    var configurationIndex: UInt64 { configurations.last?.index ?? base.index }
    /// The last configuration at or below the commit index.
    var committedConfiguration: ClusterConfiguration { configuration(at: committedIndex)! }

    /// The configuration in force at `index`; nil below the base (unknown there) or beyond the log.
    func configuration(at index: UInt64) -> ClusterConfiguration? {
        guard index >= offset, index <= lastIndex else { return nil }
        return configurations.last { $0.index <= index }?.configuration ?? baseConfiguration
    }

    private mutating func noteConfiguration(_ entry: Entry) {
        guard entry.kind == .configuration else { return }
        guard let configuration = entry.configuration else {
            // Checked before any entry reaches the log (leader, `Message.malformation`): a corrupted disk.
            preconditionFailure("configuration entry \(entry.index) does not decode")
        }
        configurations.append((entry.index, configuration))
    }
    var lastTerm: UInt64 { entries.last?.term ?? base.term }
    var lastTimeMs: Int64 { entries.last?.timeMs ?? baseTimeMs }

    /// The term of the entry at `index`: the base's term at the base (0 for index 0); nil when the index is
    /// compacted or beyond the log.
    func term(at index: UInt64) -> UInt64? {
        if index == offset { return base.term }
        guard index > offset, index <= lastIndex else { return nil }
        return entries[Int(index - offset - 1)].term
    }

    func entry(at index: UInt64) -> Entry? {
        guard index > offset, index <= lastIndex else { return nil }
        return entries[Int(index - offset - 1)]
    }

    /// Entries from `index` on, as many as fit in `maxBytes` but always at least one if any exist.
    func entries(from index: UInt64, maxBytes: Int, maxCount: Int = Int.max) -> ArraySlice<Entry> {
        guard index <= lastIndex else { return [] }
        precondition(index > offset, "entries before the log start need a snapshot")
        let start = Int(index - offset - 1)
        var end = start
        var bytes = 0
        while end < entries.count && end - start < maxCount {
            bytes += entries[end].sizeBytes
            if bytes > maxBytes && end > start { break }
            end += 1
        }
        return entries[start..<end]
    }

    /// Raft's election restriction: is a log ending at (lastIndex, lastTerm) at least as up to date as ours?
    func isUpToDate(lastIndex candidateIndex: UInt64, lastTerm candidateTerm: UInt64) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// The highest index at or below `index` whose term is at most `term` (0 if none): where a log that has `term`
    /// at `index` could first agree with ours. Below the base the terms are unknown: an index below it (which
    /// only a snapshot can serve) when even the base's term is too high, and `index` itself when it is below.
    func lastIndex(atOrBelow index: UInt64, withTermAtMost term: UInt64) -> UInt64 {
        var candidate = min(index, lastIndex)
        while candidate > offset, let t = self.term(at: candidate), t > term { candidate -= 1 }
        if candidate == offset && offset > 0 && base.term > term { return offset - 1 }
        return candidate
    }

    /// Appends entries made by this node as leader.
    mutating func append(_ entry: Entry) {
        precondition(entry.index == lastIndex + 1 && entry.term >= lastTerm, "leader append out of order")
        entries.append(entry)
        noteConfiguration(entry)
    }

    /// Applies an append from the leader whose consistency check passed. Skips entries already present, truncates a
    /// conflicting uncommitted suffix, and returns the index of the last entry the message covered.
    mutating func appendFromLeader(prevIndex: UInt64, entries newEntries: [Entry]) -> UInt64 {
        var k = 0
        while k < newEntries.count {
            let entry = newEntries[k]
            precondition(entry.index == prevIndex + 1 + UInt64(k), "append batch not contiguous")
            guard let existing = term(at: entry.index) else { break }
            if existing != entry.term {
                truncate(from: entry.index)
                break
            }
            k += 1
        }
        for entry in newEntries[k...] {
            entries.append(entry)
            noteConfiguration(entry)
        }
        checkInvariants()
        return prevIndex + UInt64(newEntries.count)
    }

    private mutating func truncate(from index: UInt64) {
        precondition(index > committedIndex, "a committed entry may never be replaced")
        entries.removeLast(Int(lastIndex - index + 1))
        // A configuration takes effect when appended, so removing its entry rolls the node back to the one before.
        configurations.removeAll { $0.index >= index }
        persistedIndex = min(persistedIndex, index - 1)
        if index < unstableFromIndex {
            truncateFromIndex = min(truncateFromIndex ?? index, index)
            unstableFromIndex = index
        }
    }

    mutating func commit(to index: UInt64) {
        guard index > committedIndex else { return }
        precondition(index <= lastIndex, "commit beyond the log")
        committedIndex = index
    }

    // MARK: Compaction and snapshots

    /// Drops the entries through `index` (durable and carried out: the caller checked). Returns the new base.
    mutating func compact(through index: UInt64) -> LogBase {
        precondition(index > offset && index <= persistedIndex && index <= handedOutIndex, "compaction out of bounds")
        let newBase = LogBase(index: index, term: term(at: index)!)
        baseTimeMs = entry(at: index)!.timeMs
        baseConfiguration = configuration(at: index)!
        configurations.removeAll { $0.index <= index }
        entries.removeFirst(Int(index - offset))
        base = newBase
        checkInvariants()
        return newBase
    }

    /// Makes `newBase` (beyond the commit index, and committed in the cluster) the log base, as an installed
    /// snapshot. Keeps the entries after it when the log holds it with the same term (they may well match the
    /// leader's), else drops the whole log. Returns whether the whole log was dropped.
    /// `configuration` is the one the snapshot carries (in force at its index); nil when it carries none: the
    /// log's own at the base if it holds it, else the committed one (the best this node knows).
    mutating func install(_ newBase: LogBase, configuration snapshotConfiguration: ClusterConfiguration?) -> Bool {
        precondition(newBase.index > committedIndex, "a stale snapshot")
        let keepSuffix = term(at: newBase.index) == newBase.term
        baseConfiguration =
            snapshotConfiguration ?? (keepSuffix ? configuration(at: newBase.index)! : committedConfiguration)
        configurations.removeAll { !keepSuffix || $0.index <= newBase.index }
        // Entries up to the commit index belong to every leader's log, hence lie before the base in time.
        baseTimeMs =
            keepSuffix ? entry(at: newBase.index)!.timeMs : max(baseTimeMs, entry(at: committedIndex)?.timeMs ?? 0)
        if keepSuffix {
            entries.removeFirst(Int(newBase.index - offset))
            // Stored entries replaced after a truncation are dropped now up to the base, the rest still must be.
            if let truncate = truncateFromIndex { truncateFromIndex = max(truncate, newBase.index + 1) }
            unstableFromIndex = max(unstableFromIndex, newBase.index + 1)
        } else {
            entries = []
            truncateFromIndex = nil  // The runtime drops the whole stored log.
            unstableFromIndex = newBase.index + 1
        }
        base = newBase
        committedIndex = newBase.index
        handedOutIndex = newBase.index
        persistedIndex = max(persistedIndex, newBase.index)
        if persistedIndex > lastIndex { persistedIndex = newBase.index }
        checkInvariants()
        return !keepSuffix
    }

    // MARK: Ready bookkeeping

    /// Entries not yet handed out for persistence.
    var unstableEntries: ArraySlice<Entry> { entries(from: unstableFromIndex, maxBytes: Int.max) }
    var hasUnstable: Bool { unstableFromIndex <= lastIndex }
    var hasCommittedToApply: Bool { committedIndex > handedOutIndex }

    /// Hands out the unstable entries and the truncation point, marking them as handed out.
    mutating func takeUnstable() -> (entries: [Entry], truncateFrom: UInt64?) {
        let taken = Array(unstableEntries)
        let truncate = truncateFromIndex
        unstableFromIndex = lastIndex + 1
        truncateFromIndex = nil
        return (taken, truncate)
    }

    /// Hands out committed entries to apply, at most `maxCount`.
    mutating func takeCommitted(maxCount: Int) -> [Entry] {
        guard committedIndex > handedOutIndex else { return [] }
        let count = Int(min(committedIndex - handedOutIndex, UInt64(maxCount)))
        let taken = Array(entries(from: handedOutIndex + 1, maxBytes: Int.max, maxCount: count))
        handedOutIndex += UInt64(taken.count)
        return taken
    }

    /// The runtime made entries up to (index, term) durable. If a truncation since replaced that entry, the disk
    /// holds a stale suffix that the next Ready deletes, so nothing is marked.
    mutating func persisted(through index: UInt64, term entryTerm: UInt64) {
        guard term(at: index) == entryTerm, index < unstableFromIndex else { return }
        persistedIndex = max(persistedIndex, index)
    }

    func checkInvariants() {
        precondition(offset <= handedOutIndex && offset <= persistedIndex, "the base is not carried out and durable")
        precondition(handedOutIndex <= committedIndex, "applied beyond committed")
        precondition(committedIndex <= lastIndex, "committed beyond the log")
        precondition(persistedIndex <= lastIndex && persistedIndex < unstableFromIndex, "persisted beyond the log")
        precondition(unstableFromIndex <= lastIndex + 1, "unstable start beyond the log")
        precondition(configurations.allSatisfy { $0.index > offset && $0.index <= lastIndex }, "stray configuration")
    }
}
