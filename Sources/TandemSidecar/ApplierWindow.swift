import TandemConsensus
import TandemHTTP

/// The entries the applier took from its queue and has not handed on yet, in log order, and how many of them were
/// written on the current connection to the app (`TANDEM_APPLY_PIPELINE` bounds them). HTTP/1.1 answers requests
/// in the order they were sent, so the oldest request written is the one the next response belongs to.
///
/// Invariants: indexes are contiguous and ascending; `sent <= slots.count`; the slots written on the current
/// connection are a prefix of `slots`, and so are those that ever reached the app (requests are written in order).
struct ApplyWindow {
    struct Slot {
        let entry: Entry
        let command: WriteCommand
        /// Bytes of its request were written to the app at least once: the app may have applied it.
        var reachedApp = false
    }

    /// The most requests awaiting an answer at once. Changing it takes effect at the next entry taken.
    var limit: Int {
        didSet { precondition(Self.limits.contains(limit), "a pipeline of 1...\(Self.limits.upperBound) requests") }
    }
    /// A response parser holds at most this many pending requests.
    static let limits = 1...HTTPResponseParser.pendingRequestsMax
    private(set) var slots: [Slot] = []
    /// Slots whose request was written on the current connection and awaits its answer (a prefix of `slots`).
    private(set) var sent = 0

    init(limit: Int) {
        precondition(Self.limits.contains(limit), "a pipeline of 1...\(Self.limits.upperBound) requests")
        self.limit = limit
    }

    var isEmpty: Bool { slots.isEmpty }
    var count: Int { slots.count }
    var isFull: Bool { slots.count >= limit }
    var first: Slot? { slots.first }
    var last: Slot? { slots.last }
    /// Some request is not written on the current connection yet (new, or to be written again after a close).
    var hasUnsent: Bool { sent < slots.count }
    /// Some request may have been applied by the app without its answer being handed on yet.
    var anyReachedApp: Bool { slots.first?.reachedApp ?? false }

    mutating func append(_ entry: Entry, command: WriteCommand) {
        precondition(!isFull, "the window holds at most \(limit) requests")
        precondition(
            slots.last.map { entry.index == $0.entry.index + 1 } ?? true, "the window's entries are contiguous")
        slots.append(Slot(entry: entry, command: command))
    }

    /// The oldest request not written on the current connection, now counted as written. `firstTime` says whether
    /// this is the first time any of its bytes go to the app.
    mutating func markNextSent() -> (slot: Slot, firstTime: Bool) {
        precondition(hasUnsent, "a request to write")
        let firstTime = !slots[sent].reachedApp
        slots[sent].reachedApp = true
        sent += 1
        return (slots[sent - 1], firstTime)
    }

    /// The answer to the oldest request written on the current connection arrived: it leaves the window.
    mutating func completeFirst() -> Slot {
        precondition(sent > 0, "an answer belongs to a request written on this connection")
        sent -= 1
        return slots.removeFirst()
    }

    /// The connection is gone: every request written on it and not answered is written again on the next one.
    mutating func connectionLost() {
        sent = 0
    }

    /// Takes out the entries none of whose bytes reached the app (a pause gives them back to the queue). They are
    /// a suffix, and none of them is written on the current connection.
    mutating func removeUnreached() -> [Entry] {
        let start = slots.firstIndex { !$0.reachedApp } ?? slots.count
        precondition(sent <= start, "a request written on this connection reached the app")
        let taken = slots[start...].map(\.entry)
        slots.removeSubrange(start...)
        return taken
    }

    /// Takes out every entry (the app's state is being rebuilt: they are applied again after it).
    mutating func removeAll() -> [Entry] {
        let taken = slots.map(\.entry)
        slots.removeAll()
        sent = 0
        return taken
    }
}
