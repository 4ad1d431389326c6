import XCTest

@testable import TandemNet

/// `ByteQueue` holds what a plain TCP connection received and what it staged to send: these tests hold it to a
/// plain array of bytes under random appends, reservations, partial consumption and clearing, and check that its
/// storage is kept between messages and given back once it grew large.
final class ByteQueueTests: XCTestCase {
    func testRandomOperationsKeepTheSameBytesInTheSameOrderAsAnArray() {
        var generator = SplitMix64(state: 0xB17E)  // the module's seeded generator (DNSResolverTests.swift)
        for round in 0..<50 {
            var queue = ByteQueue()
            var model: [UInt8] = []
            var next: UInt8 = 0
            for step in 0..<400 {
                switch generator.next() % 5 {
                case 0, 1:
                    let bytes = (0..<Int(generator.next() % 3000)).map { _ in
                        next &+= 1
                        return next
                    }
                    bytes.withUnsafeBytes { queue.append($0) }
                    model += bytes
                case 2:
                    let wanted = Int(generator.next() % 9000) + 1
                    let space = queue.reserve(atLeast: wanted)
                    XCTAssertGreaterThanOrEqual(space.count, wanted)
                    let filled = Int(generator.next() % UInt64(wanted + 1))
                    for index in 0..<filled {
                        next &+= 1
                        space[index] = next
                        model.append(next)
                    }
                    queue.commit(filled)
                case 3:
                    let count = model.isEmpty ? 0 : Int(generator.next() % UInt64(model.count + 1))
                    queue.consume(count)
                    model.removeFirst(count)
                default:
                    if generator.next() % 8 == 0 {
                        queue.removeAll()
                        model.removeAll()
                    }
                }
                XCTAssertEqual(queue.count, model.count, "round \(round) step \(step)")
                XCTAssertEqual(Array(queue.readable), model, "round \(round) step \(step)")
                if model.isEmpty {
                    XCTAssertLessThanOrEqual(queue.capacity, ByteQueue.retainedCapacity, "large storage is given back")
                }
            }
        }
    }

    func testStorageIsKeptBetweenSmallMessagesAndGivenBackAfterALargeOne() {
        var queue = ByteQueue()
        XCTAssertEqual(queue.capacity, 0, "no storage before the first byte")
        let message = [UInt8](repeating: 7, count: 300)
        message.withUnsafeBytes { queue.append($0) }
        let first = queue.readable.baseAddress
        XCTAssertEqual(queue.capacity, ByteQueue.initialCapacity)
        queue.consume(300)
        message.withUnsafeBytes { queue.append($0) }
        XCTAssertEqual(queue.readable.baseAddress, first, "the same storage serves the next message")
        queue.removeAll()
        let large = [UInt8](repeating: 9, count: ByteQueue.retainedCapacity + 1)
        large.withUnsafeBytes { queue.append($0) }
        XCTAssertGreaterThan(queue.capacity, ByteQueue.retainedCapacity)
        XCTAssertEqual(Array(queue.readable), large)
        queue.consume(large.count - 1)
        XCTAssertGreaterThan(queue.capacity, ByteQueue.retainedCapacity, "kept while bytes still wait")
        queue.consume(1)
        XCTAssertEqual(queue.capacity, 0, "given back once empty")
        XCTAssertTrue(queue.isEmpty)
    }
}
