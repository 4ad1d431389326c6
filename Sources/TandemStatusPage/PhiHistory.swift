/// The recent phi of each peer, for the status page's charts. The node runtime records a sample per peer on its
/// ticks; the admin handler reads `samples(for:)` into `StatusPageModel.Peer.phiHistory`.
///
/// Everything is bounded: samples closer together than `minimumSpacingMs` are skipped, samples older than
/// `windowMs` are dropped, and at most `peersMax` peers are tracked, so the memory used is fixed whatever the tick
/// rate or the uptime. A value type with no clock: the caller passes the time, on one monotonic clock.
public struct PhiHistory: Sendable {
    /// How many peers are tracked at most; a cluster has at most 15 members, so this only guards misuse.
    public static let peersMax = 64

    /// How far back samples are kept.
    public let windowMs: Int64
    /// The least time between two kept samples of one peer.
    public let minimumSpacingMs: Int64
    /// Samples kept per peer at most: `windowMs / minimumSpacingMs + 1`.
    public let samplesPerPeerMax: Int

    // Invariant: for every peer, samples are in increasing time order, at least minimumSpacingMs apart, and at
    // most samplesPerPeerMax of them; at most peersMax peers. Checked by `checkInvariants` after each change.
    private var samplesByPeer: [String: [Sample]] = [:]

    private struct Sample: Sendable {
        let tMs: Int64
        let phi: Double
    }

    /// A history covering `windowMs` (a minute by default, the chart's span) with samples at least
    /// `minimumSpacingMs` apart (250 ms: 241 points per chart at most).
    public init(windowMs: Int64 = StatusPage.chartWindowMs, minimumSpacingMs: Int64 = 250) {
        precondition(windowMs > 0 && minimumSpacingMs > 0, "the window and the spacing are positive durations")
        precondition(windowMs / minimumSpacingMs <= 100_000, "at most 100000 samples per peer")
        self.windowMs = windowMs
        self.minimumSpacingMs = minimumSpacingMs
        self.samplesPerPeerMax = Int(windowMs / minimumSpacingMs) + 1
    }

    /// Records `phi` for `peer` at `tMs`. Returns false when the sample is not kept: too soon after the previous
    /// one, older than it (the clock is expected to be monotonic), or a new peer beyond `peersMax`.
    @discardableResult
    public mutating func record(peer: String, tMs: Int64, phi: Double) -> Bool {
        if samplesByPeer[peer] == nil && samplesByPeer.count >= Self.peersMax { return false }
        var samples = samplesByPeer[peer] ?? []
        if let last = samples.last, tMs - last.tMs < minimumSpacingMs { return false }
        let oldestKeptMs = tMs - windowMs
        if let firstKept = samples.firstIndex(where: { $0.tMs >= oldestKeptMs }) {
            samples.removeFirst(firstKept)
        } else {
            samples.removeAll(keepingCapacity: true)
        }
        samples.append(Sample(tMs: tMs, phi: phi))
        if samples.count > samplesPerPeerMax { samples.removeFirst(samples.count - samplesPerPeerMax) }
        samplesByPeer[peer] = samples
        checkInvariants(peer)
        return true
    }

    /// The kept samples of `peer`, oldest first, in the shape `StatusPageModel.Peer.phiHistory` takes.
    public func samples(for peer: String) -> [(tMs: Int64, phi: Double)] {
        (samplesByPeer[peer] ?? []).map { (tMs: $0.tMs, phi: $0.phi) }
    }

    /// Stops tracking `peer` (it left the configuration), freeing its slot.
    public mutating func forget(peer: String) {
        samplesByPeer[peer] = nil
    }

    /// The peers with samples, sorted.
    public var peers: [String] { samplesByPeer.keys.sorted() }

    private func checkInvariants(_ peer: String) {
        assert(samplesByPeer.count <= Self.peersMax, "at most peersMax peers")
        guard let samples = samplesByPeer[peer] else { return }
        assert(samples.count <= samplesPerPeerMax, "at most samplesPerPeerMax samples per peer")
        assert(
            zip(samples, samples.dropFirst()).allSatisfy { $1.tMs - $0.tMs >= minimumSpacingMs },
            "samples are in time order and spaced")
    }
}
