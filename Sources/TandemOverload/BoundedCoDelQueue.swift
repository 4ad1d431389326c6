// BoundedCoDelQueue: a fixed-capacity FIFO whose consumer side is governed by CoDel, so a standing queue is shed
// instead of served late, and whose producer side refuses instead of growing.

/// Why an element left the queue without being served.
public enum ShedReason: String, Hashable, Sendable {
    /// CoDel found a standing queue (`CoDelController`): answer 503 `overloaded` with `Retry-After`.
    case standingQueue = "standing_queue"
    /// The caller's `isAbandoned` said nobody waits for it any more (the client went away): drop it silently.
    case abandoned
    /// It waited longer than the caller's deadline (`removeExpired`), typically because nothing was dequeued at all
    /// (every slot towards the app busy): answer 503 `overloaded` with `Retry-After`.
    case expired
}

/// An element taken out of the queue without being served.
public struct ShedElement<Element> {
    /// The element, handed back so the caller can answer or release it.
    public var element: Element
    /// Why it was shed; also the label of the shed metric.
    public var reason: ShedReason
    /// How long it waited in the queue.
    public var sojournMicros: Int64
}

/// The result of `BoundedCoDelQueue.dequeue`.
public struct DequeueResult<Element> {
    /// The element to serve now, or nil when the queue ran empty.
    public var element: Element?
    /// How long `element` waited; 0 when there is none.
    public var sojournMicros: Int64
    /// Elements shed on the way to `element`, oldest first. At most the queue's capacity.
    public var shed: [ShedElement<Element>]
}

/// The result of `BoundedCoDelQueue.enqueue`.
public enum EnqueueResult<Element> {
    /// The element is queued.
    case accepted
    /// The queue is at capacity; the element is handed back and must be answered 503 `overloaded` at once.
    case rejectedFull(Element)
}

/// A FIFO of at most `capacity` elements with CoDel on the way out. Enqueue refuses when full (the bound's defined
/// behaviour); dequeue returns the next element worth serving and everything it shed on the way: elements whose
/// client went away (free to drop, and they do not count as queueing delay) and elements CoDel sheds to dissolve a
/// standing queue. The caller answers the shed ones. No timers: call `dequeue` whenever there is capacity to serve.
public struct BoundedCoDelQueue<Element> {
    fileprivate struct Entry {
        var element: Element
        var enqueuedAtMicros: Int64
    }

    /// Ring storage. Invariant: storage.count == capacity; the `count` slots from `head` (wrapping) are non-nil and
    /// all others nil.
    private var storage: [Entry?]
    private var head = 0
    /// Elements waiting. Invariant: 0 <= count <= capacity.
    public private(set) var count = 0
    /// The most elements the queue holds.
    public let capacity: Int
    /// The CoDel state, exposed for metrics (`isDropping`, `dropCount`).
    public private(set) var controller: CoDelController
    /// When the queue last went from empty to non-empty; nil while empty. Invariant: nil exactly when count == 0.
    public private(set) var nonEmptySinceMicros: Int64?

    /// An empty queue of at most `capacity` elements, shed by CoDel with `codel`.
    public init(capacity: Int, codel: CoDelController.Configuration = CoDelController.Configuration()) {
        precondition(capacity > 0 && capacity <= 10_000_000, "queue capacities are 1...1e7")
        self.capacity = capacity
        storage = Array(repeating: nil, count: capacity)
        controller = CoDelController(configuration: codel)
    }

    /// True when nothing waits.
    public var isEmpty: Bool { count == 0 }

    /// The enqueue time of the oldest waiting element, for a timer that wants to look again, or nil.
    public var oldestEnqueuedAtMicros: Int64? {
        count == 0 ? nil : storage[head]?.enqueuedAtMicros
    }

    /// Adds `element` at the tail, stamped with `nowMicros`, or hands it back when the queue is full.
    public mutating func enqueue(_ element: Element, nowMicros: Int64) -> EnqueueResult<Element> {
        guard count < capacity else { return .rejectedFull(element) }
        storage[(head + count) % capacity] = Entry(element: element, enqueuedAtMicros: nowMicros)
        if count == 0 { nonEmptySinceMicros = nowMicros }
        count += 1
        assert(count <= capacity, "the queue never holds more than its capacity")
        return .accepted
    }

    /// Takes the next element worth serving at `nowMicros`. Elements for which `isAbandoned` is true are shed with
    /// reason `.abandoned` without consulting CoDel; the rest go through `CoDelController.onDequeue`, and those it
    /// sheds come back with reason `.standingQueue`. Runs at most `count` steps.
    public mutating func dequeue(nowMicros: Int64, isAbandoned: (Element) -> Bool = { _ in false })
        -> DequeueResult<Element>
    {
        var shed: [ShedElement<Element>] = []
        while let entry = popHead() {
            let sojournMicros = max(0, nowMicros - entry.enqueuedAtMicros)
            if isAbandoned(entry.element) {
                shed.append(ShedElement(element: entry.element, reason: .abandoned, sojournMicros: sojournMicros))
                continue
            }
            let drop = controller.onDequeue(
                sojournMicros: sojournMicros, nowMicros: nowMicros, queueEmptyAfter: count == 0)
            if drop {
                shed.append(ShedElement(element: entry.element, reason: .standingQueue, sojournMicros: sojournMicros))
                continue
            }
            return DequeueResult(element: entry.element, sojournMicros: sojournMicros, shed: shed)
        }
        controller.onQueueEmpty()
        return DequeueResult(element: nil, sojournMicros: 0, shed: shed)
    }

    /// Sheds, oldest first, every element that has waited longer than `maxSojournMicros` at `nowMicros`, with reason
    /// `.expired`. CoDel only acts when something is dequeued; call this from a timer (see `oldestEnqueuedAtMicros`)
    /// so requests still wait only briefly when the consumer is stalled. Costs O(expired elements).
    public mutating func removeExpired(nowMicros: Int64, maxSojournMicros: Int64) -> [ShedElement<Element>] {
        precondition(maxSojournMicros >= 0, "deadlines are not negative")
        var expired: [ShedElement<Element>] = []
        while let oldest = oldestEnqueuedAtMicros, nowMicros - oldest > maxSojournMicros, let entry = popHead() {
            expired.append(ShedElement(element: entry.element, reason: .expired, sojournMicros: nowMicros - oldest))
        }
        return expired
    }

    /// Sheds stale elements with the adaptive deadline of Facebook's queue management ("Fail at Scale", ACM Queue
    /// 2015), the complement RFC CoDel needs when arrivals do not slow down when shed (an open-loop flood): CoDel
    /// drops at most one element per `interval / sqrt(count)`, far slower than a flood refills the queue, so alone
    /// it leaves the queue standing at its capacity and serves every request late. While the queue has not been
    /// empty for a whole CoDel interval (a standing queue) the deadline is the CoDel target; otherwise it is the
    /// interval. Elements past it are shed oldest first: `.standingQueue` under the short deadline, `.expired`
    /// under the long one. Call it before each `dequeue` (and from a timer when nothing is dequeued).
    /// Costs O(shed elements).
    public mutating func removeStale(nowMicros: Int64) -> [ShedElement<Element>] {
        guard let since = nonEmptySinceMicros else { return [] }
        let standing = nowMicros - since >= controller.configuration.intervalMicros
        let deadlineMicros =
            standing ? controller.configuration.targetMicros : controller.configuration.intervalMicros
        var stale = removeExpired(nowMicros: nowMicros, maxSojournMicros: deadlineMicros)
        if standing {
            for index in stale.indices { stale[index].reason = .standingQueue }
        }
        return stale
    }

    /// Removes every waiting element for which `shouldRemove` is true (clients gone, a timeout sweep), keeping the
    /// order of the rest, and returns them oldest first. O(count).
    public mutating func removeAll(where shouldRemove: (Element) -> Bool) -> [Element] {
        var kept: [Entry] = []
        var removed: [Element] = []
        while let entry = popHead() {
            if shouldRemove(entry.element) { removed.append(entry.element) } else { kept.append(entry) }
        }
        head = 0
        for entry in kept {
            storage[count] = entry
            count += 1
        }
        if count > 0 { nonEmptySinceMicros = kept[0].enqueuedAtMicros }
        return removed
    }

    private mutating func popHead() -> Entry? {
        guard count > 0 else { return nil }
        let entry = storage[head]
        precondition(entry != nil, "occupied ring slots hold entries")
        storage[head] = nil
        head = (head + 1) % capacity
        count -= 1
        if count == 0 { nonEmptySinceMicros = nil }
        return entry
    }
}

extension ShedElement: Sendable where Element: Sendable {}
extension DequeueResult: Sendable where Element: Sendable {}
extension EnqueueResult: Sendable where Element: Sendable {}
extension BoundedCoDelQueue: Sendable where Element: Sendable {}
extension BoundedCoDelQueue.Entry: Sendable where Element: Sendable {}
