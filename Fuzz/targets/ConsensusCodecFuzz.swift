// libFuzzer target: a peer frame (first byte = frame type, the rest = payload) through the consensus codec, and
// whatever it accepts into a follower and a leader. Traps when the codec or the core traps, when an accepted
// message does not re-encode to what decodes the same, or when the codec accepts a message the core finds
// malformed.
import TandemConsensus

private let ids = [NodeID("n1"), NodeID("n2"), NodeID("n3")]

private func drain(_ node: inout RaftNode) {
    while node.hasReady {
        let ready = node.ready()
        node.advance(ready)
    }
}

/// n1 in term 0, a follower that has heard from nobody.
private let follower = RaftNode(config: RaftConfig(id: ids[0], peers: ids), recovered: RecoveredState(), seed: 1)

/// n1 elected leader of term 1 with n2's vote, holding its no-op at index 1.
private let leader: RaftNode = {
    var node = follower
    var now: Int64 = 0
    while node.currentRole != .preCandidate {
        now += 10
        node.tick(nowMs: now)
        drain(&node)
    }
    node.step(.preVoteResponse(VoteResponse(from: ids[1], to: ids[0], term: 1, granted: true)), nowMs: now)
    drain(&node)
    node.step(.voteResponse(VoteResponse(from: ids[1], to: ids[0], term: 1, granted: true)), nowMs: now)
    drain(&node)
    precondition(node.currentRole == .leader, "the fuzz target's leader was not elected")
    return node
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let type = data[0]
    let payload = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    guard let message = try? ConsensusCodec.decode(type: type, payload: payload) else { return 0 }
    precondition(message.malformation == nil, "the codec accepted a malformed message")
    let again = ConsensusCodec.encode(message)
    precondition(again.type == type, "re-encoded under another frame type")
    precondition((try? ConsensusCodec.decode(type: again.type, payload: again.payload)) == message, "no round trip")
    for template in [follower, leader] {
        var node = template
        let now: Int64 = 5000
        node.step(message, nowMs: now)
        drain(&node)
        node.tick(nowMs: now + 10)
        drain(&node)
    }
    return 0
}
