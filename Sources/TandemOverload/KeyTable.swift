// KeyTable: the bounded map from rate-limit key to theoretical arrival time behind `GCRARateLimiter`, with the two
// orders eviction needs: by arrival time (a min-heap, to find the key that went idle first) and by last use (a
// doubly linked list, to find the least recently seen key).

/// What making room for a new key cost.
enum KeyEviction: Equatable {
    /// The table had room.
    case none
    /// A key whose arrival time was in the past was forgotten; no decision changes.
    case idle
    /// Every key was active; the least recently seen one was forgotten with its debt.
    case active
}

struct KeyTable: Sendable {
    private struct Slot: Sendable {
        var key: String
        var arrival: FractionalInstant
        /// Neighbours in recency order (towards the most and the least recently seen); -1 at the ends.
        var newer: Int
        var older: Int
        /// Where this slot sits in `heap`. Invariant: heap[heapPosition] == this slot's index.
        var heapPosition: Int
    }

    /// Invariant: slots.count <= capacity, and every slot is live (indexed by `indexByKey`, in `heap`, in the list).
    private var slots: [Slot] = []
    /// Invariant: indexByKey.count == slots.count and indexByKey[slots[i].key] == i.
    private var indexByKey: [String: Int] = [:]
    /// Slot indices ordered as a binary min-heap on arrival time. Invariant: heap.count == slots.count.
    private var heap: [Int] = []
    /// The most and least recently seen slots; -1 when empty.
    private var newest = -1
    private var oldest = -1
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0, "a key table holds at least one key")
        self.capacity = capacity
        indexByKey.reserveCapacity(min(capacity, 1 << 16))
    }

    var count: Int { slots.count }

    /// The slot of `key`, marked as the most recently seen; a new key starts with its arrival time at `now`
    /// (a full burst), taking the place of an evicted key when the table is full.
    mutating func slot(for key: String, now: FractionalInstant) -> (slot: Int, eviction: KeyEviction) {
        if let index = indexByKey[key] {
            moveToNewest(index)
            return (index, .none)
        }
        guard slots.count == capacity else {
            let index = slots.count
            slots.append(Slot(key: key, arrival: now, newer: -1, older: -1, heapPosition: heap.count))
            heap.append(index)
            indexByKey[key] = index
            linkAsNewest(index)
            siftUp(heap.count - 1)
            assert(slots.count <= capacity && heap.count == slots.count, "the table holds at most capacity keys")
            return (index, .none)
        }
        // The heap's root went idle first; if even it is still active, every key is, and recency decides.
        let rootIndex = heap[0]
        let isIdle = slots[rootIndex].arrival <= now
        let victim = isIdle ? rootIndex : oldest
        indexByKey.removeValue(forKey: slots[victim].key)
        slots[victim].key = key
        indexByKey[key] = victim
        moveToNewest(victim)
        setTheoreticalArrival(now, at: victim)
        return (victim, isIdle ? .idle : .active)
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

    // MARK: Recency list

    private mutating func linkAsNewest(_ index: Int) {
        slots[index].newer = -1
        slots[index].older = newest
        if newest >= 0 { slots[newest].newer = index }
        newest = index
        if oldest < 0 { oldest = index }
    }

    private mutating func unlink(_ index: Int) {
        let newer = slots[index].newer
        let older = slots[index].older
        if newer >= 0 { slots[newer].older = older } else { newest = older }
        if older >= 0 { slots[older].newer = newer } else { oldest = newer }
    }

    private mutating func moveToNewest(_ index: Int) {
        guard newest != index else { return }
        unlink(index)
        linkAsNewest(index)
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
        var listed = 0
        var cursor = newest
        while cursor >= 0 {
            listed += 1
            precondition(listed <= slots.count, "the recency list has no cycle")
            cursor = slots[cursor].older
        }
        precondition(listed == slots.count)
    }
}
