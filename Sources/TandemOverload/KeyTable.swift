// KeyTable: the bounded map from rate-limit key to theoretical arrival time behind `GCRARateLimiter`, ordered by
// arrival time (a min-heap) to find the key that went idle first. A key with debt (arrival time in the future) is
// never forgotten: a full table of such keys takes no newcomer, and the limiter limits those in an overflow bucket.

/// What making room for a new key cost.
enum KeyEviction: Equatable {
    /// The table had room.
    case none
    /// A key whose arrival time was in the past was forgotten; no decision changes.
    case idle
}

struct KeyTable: Sendable {
    private struct Slot: Sendable {
        var key: String
        var arrival: FractionalInstant
        /// Where this slot sits in `heap`. Invariant: heap[heapPosition] == this slot's index.
        var heapPosition: Int
    }

    /// Invariant: slots.count <= capacity, and every slot is live (indexed by `indexByKey` and in `heap`).
    private var slots: [Slot] = []
    /// Invariant: indexByKey.count == slots.count and indexByKey[slots[i].key] == i.
    private var indexByKey: [String: Int] = [:]
    /// Slot indices ordered as a binary min-heap on arrival time. Invariant: heap.count == slots.count.
    private var heap: [Int] = []
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0, "a key table holds at least one key")
        self.capacity = capacity
        indexByKey.reserveCapacity(min(capacity, 1 << 16))
    }

    var count: Int { slots.count }

    /// The slot of `key`; a new key starts with its arrival time at `now` (a full burst), taking the place of a key
    /// whose debt has expired when the table is full. Nil when the table is full and every key still has debt:
    /// forgetting one would forgive it, so the newcomer does not get a slot of its own.
    mutating func slot(for key: String, now: FractionalInstant) -> (slot: Int, eviction: KeyEviction)? {
        if let index = indexByKey[key] {
            return (index, .none)
        }
        guard slots.count == capacity else {
            let index = slots.count
            slots.append(Slot(key: key, arrival: now, heapPosition: heap.count))
            heap.append(index)
            indexByKey[key] = index
            siftUp(heap.count - 1)
            assert(slots.count <= capacity && heap.count == slots.count, "the table holds at most capacity keys")
            return (index, .none)
        }
        // The heap's root went idle first; if even it still has debt, every key has.
        let victim = heap[0]
        guard slots[victim].arrival <= now else { return nil }
        indexByKey.removeValue(forKey: slots[victim].key)
        slots[victim].key = key
        indexByKey[key] = victim
        setTheoreticalArrival(now, at: victim)
        return (victim, .idle)
    }

    func theoreticalArrival(at index: Int) -> FractionalInstant {
        slots[index].arrival
    }

    mutating func setTheoreticalArrival(_ arrival: FractionalInstant, at index: Int) {
        let previous = slots[index].arrival
        slots[index].arrival = arrival
        if arrival < previous {
            siftUp(slots[index].heapPosition)
        } else {
            siftDown(slots[index].heapPosition)
        }
    }

    // MARK: Arrival-time heap

    private mutating func siftUp(_ start: Int) {
        var position = start
        while position > 0 {
            let parent = (position - 1) / 2
            guard slots[heap[position]].arrival < slots[heap[parent]].arrival else { return }
            swapHeap(position, parent)
            position = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var position = start
        while true {
            let left = 2 * position + 1
            guard left < heap.count else { return }
            let right = left + 1
            var smallest = left
            if right < heap.count && slots[heap[right]].arrival < slots[heap[left]].arrival { smallest = right }
            guard slots[heap[smallest]].arrival < slots[heap[position]].arrival else { return }
            swapHeap(position, smallest)
            position = smallest
        }
    }

    private mutating func swapHeap(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slots[heap[a]].heapPosition = a
        slots[heap[b]].heapPosition = b
    }

    /// Walks every structure and checks the invariants written beside the fields; O(n), for tests.
    func checkInvariants() {
        precondition(slots.count <= capacity && indexByKey.count == slots.count && heap.count == slots.count)
        for (index, slot) in slots.enumerated() {
            precondition(indexByKey[slot.key] == index && heap[slot.heapPosition] == index)
        }
        for position in 1..<max(1, heap.count) {
            precondition(!(slots[heap[position]].arrival < slots[heap[(position - 1) / 2]].arrival))
        }
    }
}
