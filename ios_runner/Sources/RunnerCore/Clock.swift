import Dispatch
import Foundation

/// Monotonic timing helpers. No statistics here: the host summarises the samples.
public enum Clock {
    /// Nanoseconds on the monotonic uptime clock.
    @inlinable
    public static func nowNs() -> UInt64 {
        DispatchTime.now().uptimeNanoseconds
    }

    /// Milliseconds elapsed since `startNs`.
    @inlinable
    public static func msSince(_ startNs: UInt64) -> Double {
        Double(nowNs() &- startNs) / 1_000_000.0
    }

    /// Run `body` and return its result with the elapsed milliseconds.
    public static func time<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = nowNs()
        let value = try body()
        return (value, msSince(start))
    }

    /// Async variant of `time` (a distinct name keeps overload resolution unambiguous).
    public static func timeAsync<T>(_ body: () async throws -> T) async rethrows -> (T, Double) {
        let start = nowNs()
        let value = try await body()
        return (value, msSince(start))
    }

    /// Time `count` calls of `body`, one sample per call.
    public static func samples(_ count: Int, _ body: () throws -> Void) rethrows -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(max(count, 0))
        for _ in 0..<max(count, 0) {
            let start = nowNs()
            try body()
            out.append(msSince(start))
        }
        return out
    }
}
