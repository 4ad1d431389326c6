import Foundation

@testable import TandemOverload

/// A deterministic M/M/c model of the local app behind the concurrency limiter: Poisson arrivals, `workers`
/// parallel workers with exponential service times, and an unbounded FIFO inside the app for requests admitted
/// beyond its workers (the queue the limiter exists to keep short). Requests the limiter refuses are shed at once,
/// or, when `waiting` is set, wait in that CoDel queue for a slot as the proxy's write queue would. Everything is
/// seeded, so a run is a pure function of its parameters.
struct AppSimulation {
    struct Figures {
        var offered = 0
        var completed = 0
        var shed = 0
        /// From arrival at the proxy to the app's answer, waiting included.
        var latenciesMicros: [Int64] = []
        var limitSamples: [Int] = []
        var maxAppBacklog = 0
        var maxWaiting = 0

        func percentileLatencyMicros(_ fraction: Double) -> Int64 {
            guard !latenciesMicros.isEmpty else { return 0 }
            let sorted = latenciesMicros.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
        }

        var meanLimit: Double {
            limitSamples.isEmpty ? 0 : Double(limitSamples.reduce(0, +)) / Double(limitSamples.count)
        }
    }

    private struct Request {
        var arrivalMicros: Int64
        var startMicros: Int64
        var inflightAtStart: Int
    }

    var limiter: AdaptiveConcurrencyLimit
    var waiting: BoundedCoDelQueue<Int64>?
    /// When set, waiting requests older than this are shed (`removeExpired`) before each dequeue.
    var maxWaitMicros: Int64?
    /// When true, stale waiting requests are shed with `removeStale` before each dequeue.
    var shedStale = false
    let workers: Int
    var meanServiceMicros: Double
    var arrivalsPerSecond: Double
    private var generator: SplitMix64
    private var nowMicros: Int64 = 0
    private var nextArrivalMicros: Int64 = 0
    /// The request on each worker and when it finishes; nil when the worker is idle.
    private var busy: [(request: Request, doneMicros: Int64)?]
    private var backlog: [Request] = []
    private var backlogHead = 0
    private var figures = Figures()
    private var measuring = false

    init(
        limiter: AdaptiveConcurrencyLimit, workers: Int, meanServiceMicros: Double, arrivalsPerSecond: Double,
        seed: UInt64, waiting: BoundedCoDelQueue<Int64>? = nil
    ) {
        self.limiter = limiter
        self.workers = workers
        self.meanServiceMicros = meanServiceMicros
        self.arrivalsPerSecond = arrivalsPerSecond
        self.waiting = waiting
        generator = SplitMix64(seed: seed)
        busy = Array(repeating: nil, count: workers)
    }

    /// Runs until `untilMicros`, recording figures for events after `measureFromMicros`.
    mutating func run(untilMicros: Int64, measureFromMicros: Int64) -> Figures {
        figures = Figures()
        nextArrivalMicros = max(nextArrivalMicros, nowMicros)
        while true {
            let worker = nextCompletingWorker()
            let completionMicros = worker.map { busy[$0]!.doneMicros } ?? Int64.max
            let eventMicros = min(completionMicros, nextArrivalMicros)
            if eventMicros >= untilMicros { break }
            nowMicros = eventMicros
            measuring = nowMicros >= measureFromMicros
            if let worker, completionMicros <= nextArrivalMicros {
                complete(on: worker)
            } else {
                arrive()
            }
        }
        nowMicros = untilMicros
        return figures
    }

    private func nextCompletingWorker() -> Int? {
        var next: Int?
        for index in 0..<workers {
            guard let done = busy[index]?.doneMicros else { continue }
            if next == nil || done < busy[next!]!.doneMicros { next = index }
        }
        return next
    }

    private mutating func arrive() {
        nextArrivalMicros = nowMicros + max(1, exponential(mean: 1_000_000 / arrivalsPerSecond))
        if measuring { figures.offered += 1 }
        if limiter.tryAcquire() {
            admit(arrivalMicros: nowMicros)
        } else if waiting == nil {
            if measuring { figures.shed += 1 }
        } else if case .rejectedFull = waiting!.enqueue(nowMicros, nowMicros: nowMicros) {
            if measuring { figures.shed += 1 }
        } else if measuring {
            figures.maxWaiting = max(figures.maxWaiting, waiting!.count)
        }
    }

    private mutating func complete(on worker: Int) {
        let request = busy[worker]!.request
        busy[worker] = nil
        limiter.onSample(
            rttMicros: nowMicros - request.startMicros, inflightAtStart: request.inflightAtStart, didDrop: false)
        limiter.release()
        if measuring {
            figures.completed += 1
            figures.latenciesMicros.append(nowMicros - request.arrivalMicros)
            figures.limitSamples.append(limiter.limit)
        }
        if backlogHead < backlog.count {
            startService(backlog[backlogHead], on: worker)
            backlogHead += 1
            if backlogHead > 4096 {
                backlog.removeFirst(backlogHead)
                backlogHead = 0
            }
        }
        admitWaiting()
    }

    /// Fills free slots from the waiting queue, as the proxy does whenever a request to the app finishes.
    private mutating func admitWaiting() {
        guard waiting != nil else { return }
        if let maxWaitMicros, measuring {
            figures.shed += waiting!.removeExpired(nowMicros: nowMicros, maxSojournMicros: maxWaitMicros).count
        } else if let maxWaitMicros {
            _ = waiting!.removeExpired(nowMicros: nowMicros, maxSojournMicros: maxWaitMicros)
        }
        if shedStale {
            let stale = waiting!.removeStale(nowMicros: nowMicros).count
            if measuring { figures.shed += stale }
        }
        while limiter.tryAcquire() {
            let next = waiting!.dequeue(nowMicros: nowMicros)
            if measuring { figures.shed += next.shed.count }
            guard let arrivalMicros = next.element else {
                limiter.release()
                return
            }
            admit(arrivalMicros: arrivalMicros)
        }
    }

    private mutating func admit(arrivalMicros: Int64) {
        let request = Request(arrivalMicros: arrivalMicros, startMicros: nowMicros, inflightAtStart: limiter.inflight)
        if let idle = busy.firstIndex(where: { $0 == nil }) {
            startService(request, on: idle)
        } else {
            backlog.append(request)
            if measuring { figures.maxAppBacklog = max(figures.maxAppBacklog, backlog.count - backlogHead) }
        }
    }

    private mutating func startService(_ request: Request, on worker: Int) {
        busy[worker] = (request, nowMicros + max(1, exponential(mean: meanServiceMicros)))
    }

    private mutating func exponential(mean: Double) -> Int64 {
        let uniform = (Double(generator.next() >> 11) + 0.5) / Double(1 << 53)
        return Int64(-log(uniform) * mean)
    }
}
