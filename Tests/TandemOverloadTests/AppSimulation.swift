import Foundation

@testable import TandemOverload

/// A deterministic M/M/c model of the local app behind the concurrency limiter: Poisson arrivals, `workers`
/// parallel workers with exponential service times, and an unbounded FIFO inside the app for requests admitted
/// beyond its workers (the queue the limiter exists to keep short). Everything is seeded.
struct AppSimulation {
    struct Figures {
        var offered = 0
        var admitted = 0
        var completed = 0
        var shed = 0
        var latenciesMicros: [Int64] = []
        var limitSamples: [Int] = []
        var maxAppBacklog = 0

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
        var startMicros: Int64
        var inflightAtStart: Int
    }

    var limiter: AdaptiveConcurrencyLimit
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

    init(
        limiter: AdaptiveConcurrencyLimit, workers: Int, meanServiceMicros: Double, arrivalsPerSecond: Double,
        seed: UInt64
    ) {
        self.limiter = limiter
        self.workers = workers
        self.meanServiceMicros = meanServiceMicros
        self.arrivalsPerSecond = arrivalsPerSecond
        generator = SplitMix64(seed: seed)
        busy = Array(repeating: nil, count: workers)
    }

    private mutating func exponential(mean: Double) -> Int64 {
        let uniform = (Double(generator.next() >> 11) + 0.5) / Double(1 << 53)
        return Int64(-log(uniform) * mean)
    }

    /// Runs until `untilMicros`, recording figures for completions after `measureFromMicros`.
    mutating func run(untilMicros: Int64, measureFromMicros: Int64) -> Figures {
        var figures = Figures()
        if nextArrivalMicros < nowMicros { nextArrivalMicros = nowMicros }
        while true {
            var nextWorker = -1
            for index in 0..<workers {
                if let done = busy[index]?.doneMicros, nextWorker < 0 || done < busy[nextWorker]!.doneMicros {
                    nextWorker = index
                }
            }
            let completionMicros = nextWorker >= 0 ? busy[nextWorker]!.doneMicros : Int64.max
            let eventMicros = min(completionMicros, nextArrivalMicros)
            if eventMicros >= untilMicros { break }
            nowMicros = eventMicros
            let measuring = nowMicros >= measureFromMicros
            if completionMicros <= nextArrivalMicros {
                let request = busy[nextWorker]!.request
                busy[nextWorker] = nil
                let rtt = nowMicros - request.startMicros
                limiter.onSample(rttMicros: rtt, inflightAtStart: request.inflightAtStart, didDrop: false)
                limiter.release()
                if measuring {
                    figures.completed += 1
                    figures.latenciesMicros.append(rtt)
                    figures.limitSamples.append(limiter.limit)
                }
                if backlogHead < backlog.count {
                    startService(backlog[backlogHead], on: nextWorker)
                    backlogHead += 1
                    if backlogHead > 4096 {
                        backlog.removeFirst(backlogHead)
                        backlogHead = 0
                    }
                }
            } else {
                nextArrivalMicros = nowMicros + max(1, exponential(mean: 1_000_000 / arrivalsPerSecond))
                if measuring { figures.offered += 1 }
                if limiter.tryAcquire() {
                    if measuring { figures.admitted += 1 }
                    let request = Request(startMicros: nowMicros, inflightAtStart: limiter.inflight)
                    if let idle = busy.firstIndex(where: { $0 == nil }) {
                        startService(request, on: idle)
                    } else {
                        backlog.append(request)
                        figures.maxAppBacklog = max(figures.maxAppBacklog, backlog.count - backlogHead)
                    }
                } else if measuring {
                    figures.shed += 1
                }
            }
        }
        nowMicros = untilMicros
        return figures
    }

    private mutating func startService(_ request: Request, on worker: Int) {
        busy[worker] = (request, nowMicros + max(1, exponential(mean: meanServiceMicros)))
    }
}
