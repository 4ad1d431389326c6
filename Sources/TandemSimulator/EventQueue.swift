/// A binary min-heap of timed events. Ties break by insertion order, so a run is a pure function of its seed.
struct EventQueue<Event> {
    private struct Item {
        var timeMicros: Int64
        var sequence: UInt64
        var event: Event
        func precedes(_ other: Item) -> Bool {
            timeMicros != other.timeMicros ? timeMicros < other.timeMicros : sequence < other.sequence
        }
    }

    /// Invariant: heap order by (timeMicros, sequence). Bounded by `capacity`: pushing beyond it is a harness bug.
    private var heap: [Item] = []
    private var nextSequence: UInt64 = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var nextTimeMicros: Int64? { heap.first?.timeMicros }

    mutating func push(_ event: Event, atMicros timeMicros: Int64) {
        precondition(heap.count < capacity, "simulator event queue overflow: a component floods the network")
        heap.append(Item(timeMicros: timeMicros, sequence: nextSequence, event: event))
        nextSequence += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (timeMicros: Int64, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let item = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].precedes(heap[smallest]) { smallest = left }
            if right < heap.count && heap[right].precedes(heap[smallest]) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return (item.timeMicros, item.event)
    }
}
