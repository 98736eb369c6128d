import Foundation

/// A sustained job (`run.sustained`): the model predicts without a pause for `durationS` seconds,
/// cut into windows of `windowS`. Each window's count, median, p90 and mean come from every
/// prediction it timed; it keeps at most `windowSamples` of those times (a uniform choice by a
/// generator seeded with the window's index, in measured order) and the thermal state at its end
/// (`thermal`: the app passes ProcessInfo.thermalState's name; RunnerCore stays platform-free).
public enum SustainedRun {
    public static func run(_ spec: SustainedSpec, thermal: () -> String,
                           _ body: () throws -> Void) rethrows -> SustainedReport {
        var windows: [SustainedWindow] = []
        let durationNs = UInt64(max(spec.durationS, 0) * 1_000_000_000)
        let windowNs = UInt64(max(spec.windowS, 0.001) * 1_000_000_000)
        let start = Clock.nowNs()
        var windowStart = start
        var current: [Double] = []
        while true {
            let now = Clock.nowNs()
            if now &- windowStart >= windowNs || now &- start >= durationNs {
                windows.append(window(current, startS: seconds(windowStart &- start),
                                      endS: seconds(now &- start), cap: spec.windowSamples,
                                      index: windows.count, thermal: thermal()))
                current = []
                windowStart = now
                if now &- start >= durationNs { break }
            }
            let t = Clock.nowNs()
            try body()
            current.append(Clock.msSince(t))
        }
        return SustainedReport(windows: windows)
    }

    static func seconds(_ ns: UInt64) -> Double {
        Double(ns) / 1_000_000_000
    }

    /// One window's figures from all of `samples`, and the times it keeps.
    public static func window(_ samples: [Double], startS: Double, endS: Double, cap: Int,
                              index: Int, thermal: String) -> SustainedWindow {
        let sorted = samples.sorted()
        func quantile(_ q: Double) -> Double? {
            guard !sorted.isEmpty else { return nil }
            let pos = Double(sorted.count - 1) * q
            let lo = Int(pos.rounded(.down))
            let hi = Int(pos.rounded(.up))
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
        }
        let mean: Double? = samples.isEmpty ? nil : samples.reduce(0, +) / Double(samples.count)
        return SustainedWindow(startS: startS, endS: endS, count: samples.count,
                               medianMs: quantile(0.5), p90Ms: quantile(0.9), meanMs: mean,
                               latency: keep(samples, cap: cap, seed: UInt64(index)),
                               thermalState: thermal)
    }

    /// At most `cap` of `samples` (all when `cap` <= 0), chosen uniformly by a partial
    /// Fisher-Yates shuffle with a SplitMix64 generator seeded by `seed`, in measured order.
    public static func keep(_ samples: [Double], cap: Int, seed: UInt64) -> [Double] {
        guard cap > 0, samples.count > cap else { return samples }
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var indices = Array(0..<samples.count)
        for i in 0..<cap {
            let j = i + Int(next() % UInt64(samples.count - i))
            indices.swapAt(i, j)
        }
        return indices[0..<cap].sorted().map { samples[$0] }
    }
}

public struct SustainedReport: Codable {
    public var windows: [SustainedWindow]

    enum CodingKeys: String, CodingKey {
        case windows
    }
}

public struct SustainedWindow: Codable {
    public var startS: Double
    public var endS: Double
    public var count: Int
    public var medianMs: Double?
    public var p90Ms: Double?
    public var meanMs: Double?
    public var latency: [Double]
    public var thermalState: String

    enum CodingKeys: String, CodingKey {
        case startS = "start_s"
        case endS = "end_s"
        case count
        case medianMs = "median_ms"
        case p90Ms = "p90_ms"
        case meanMs = "mean_ms"
        case latency
        case thermalState = "thermal_state"
    }
}
