import Glibc

/// A first-in first-out run of bytes in one contiguous allocation that outlives its contents: bytes are appended
/// at the end and consumed from the front, and the storage is kept when the queue empties, so a connection that
/// receives or sends one small message after another allocates once instead of once per message (an evbuffer
/// allocates a chain for every message and frees it once drained). The storage grows when the bytes waiting need
/// more room and is given back when it has grown past `retainedCapacity` and empties. Storage is made at the first
/// byte, not before.
struct ByteQueue: ~Copyable {
    private var storage: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private var start = 0
    private var end = 0

    /// The size of the storage when it is first made, and the most kept while the queue is empty.
    static let initialCapacity = 4096
    static let retainedCapacity = 64 * 1024

    init() {}

    deinit { storage?.deallocate() }

    var count: Int { end - start }
    var isEmpty: Bool { start == end }

    /// The bytes waiting, valid until the next mutation.
    var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { $0 + start }, count: end - start)
    }

    /// Room at the end for at least `minimum` more bytes (moving the waiting bytes to the front, or growing, as
    /// needed); returns the whole free tail, to be filled and then committed with `commit(_:)`.
    mutating func reserve(atLeast minimum: Int) -> UnsafeMutableRawBufferPointer {
        precondition(minimum > 0, "a reservation is for at least one byte")
        if capacity - end < minimum {
            let waiting = end - start
            if start > 0 && capacity - waiting >= minimum {
                if waiting > 0 { memmove(storage!, storage! + start, waiting) }
            } else {
                var newCapacity = max(capacity * 2, Self.initialCapacity)
                while newCapacity - waiting < minimum { newCapacity *= 2 }
                let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
                if waiting > 0 { grown.copyMemory(from: storage! + start, byteCount: waiting) }
                storage?.deallocate()
                storage = grown
                capacity = newCapacity
            }
            start = 0
            end = waiting
        }
        return UnsafeMutableRawBufferPointer(start: storage! + end, count: capacity - end)
    }

    /// Counts `count` bytes written into the space `reserve` returned as waiting.
    mutating func commit(_ count: Int) {
        precondition(count >= 0 && end + count <= capacity, "committed more than was reserved")
        end += count
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let space = reserve(atLeast: bytes.count)
        space.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
        end += bytes.count
    }

    /// Drops `count` bytes from the front.
    mutating func consume(_ count: Int) {
        precondition(count >= 0 && count <= end - start, "consumed more than is waiting")
        start += count
        if start == end { emptied() }
    }

    /// Drops everything waiting.
    mutating func removeAll() {
        start = end
        emptied()
    }

    private mutating func emptied() {
        start = 0
        end = 0
        if capacity > Self.retainedCapacity {
            storage?.deallocate()
            storage = nil
            capacity = 0
        }
    }
}
