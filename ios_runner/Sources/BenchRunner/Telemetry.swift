import Darwin
import Foundation
import os
import RunnerCore
import UIKit

/// Preconditions and measurements about the phone itself: thermal state, Low Power Mode,
/// memory footprint, and the kernel's process energy estimate. Each is labelled for what it is.
final class Telemetry {
    private let start = Clock.nowNs()
    private var timeline: [ThermalSample] = []
    private var observer: NSObjectProtocol?
    private let lock = NSLock()
    private(set) var peakFootprint: Int = 0

    init() {
        record()
        observer = NotificationCenter.default.addObserver(
            forName: ProcessInfo.thermalStateDidChangeNotification, object: nil, queue: nil
        ) { [weak self] _ in
            self?.record()
        }
    }

    deinit {
        if let observer { NotificationCenter.default.removeObserver(observer) }
    }

    /// Keep the screen on so the app stays in the foreground (GPU work is refused in the background).
    @MainActor
    static func keepAwake(_ on: Bool) {
        UIApplication.shared.isIdleTimerDisabled = on
    }

    static func thermalName(_ state: ProcessInfo.ThermalState) -> String {
        switch state {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "critical"
        }
    }

    private static func rank(_ name: String) -> Int {
        ["nominal", "fair", "serious", "critical"].firstIndex(of: name) ?? 3
    }

    /// Append the current thermal state to the timeline.
    func record() {
        let sample = ThermalSample(tS: Clock.msSince(start) / 1000.0,
                                   state: Telemetry.thermalName(ProcessInfo.processInfo.thermalState))
        lock.lock()
        timeline.append(sample)
        lock.unlock()
    }

    var thermalTimeline: [ThermalSample] {
        lock.lock()
        defer { lock.unlock() }
        return timeline
    }

    var lowPower: Bool { ProcessInfo.processInfo.isLowPowerModeEnabled }

    /// Wait up to `waitS` seconds for the thermal state to reach `maxState`; returns the seconds waited
    /// or throws a precondition error (the run is refused, not measured hot).
    func waitForThermal(maxState: String, waitS: Double) async throws -> Double {
        let began = Clock.nowNs()
        while Telemetry.rank(Telemetry.thermalName(ProcessInfo.processInfo.thermalState)) > Telemetry.rank(maxState) {
            let waited = Clock.msSince(began) / 1000.0
            if waited >= waitS {
                record()
                let now = Telemetry.thermalName(ProcessInfo.processInfo.thermalState)
                throw RunnerError.precondition(
                    "thermal state was \(now) and did not return to \(maxState) within \(Int(waitS)) s; refused to start")
            }
            try await Task.sleep(nanoseconds: 5_000_000_000)
            record()
        }
        return Clock.msSince(began) / 1000.0
    }

    /// Refuse to run in Low Power Mode (it caps CPU and GPU clocks).
    func checkLowPower(forbid: Bool) throws {
        if forbid && lowPower {
            throw RunnerError.precondition("Low Power Mode is on; turn it off in Settings → Battery")
        }
    }

    /// `phys_footprint` of this process in bytes (what Xcode's memory gauge shows).
    func physFootprint() -> Int {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) { ptr in
            ptr.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), raw, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return 0 }
        let value = Int(info.phys_footprint)
        if value > peakFootprint { peakFootprint = value }
        return value
    }

    /// Bytes the process may still allocate before jetsam (`os_proc_available_memory`).
    func availableMemory() -> Int? {
        let value = os_proc_available_memory()
        return value > 0 ? Int(value) : nil
    }

    /// The kernel's estimate of energy billed to this task, in nJ (`task_energy` of TASK_POWER_INFO_V2).
    /// It covers this process's CPU work only; Neural Engine and GPU work done by other daemons is not in it.
    func taskEnergyNanojoules() -> Double? {
        #if arch(arm64)
        var info = task_power_info_v2_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_power_info_v2_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) { ptr in
            ptr.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { raw in
                task_info(mach_task_self_, task_flavor_t(TASK_POWER_INFO_V2), raw, &count)
            }
        }
        guard kr == KERN_SUCCESS else { return nil }
        return Double(info.task_energy)
        #else
        return nil  // task_energy exists only in the arm64 layout of task_power_info_v2
        #endif
    }

    static let energyLabel = "process CPU energy estimate (task_info TASK_POWER_INFO_V2 task_energy), nJ; excludes ANE/GPU work"

    func environment(cooldownWaitedS: Double?) -> EnvironmentReport {
        record()
        return EnvironmentReport(thermalTimeline: thermalTimeline, lowPower: lowPower,
                                 batteryState: Telemetry.batteryState(), cooldownWaitedS: cooldownWaitedS)
    }

    static func batteryState() -> String? {
        if Thread.isMainThread {
            return MainActor.assumeIsolated { readBatteryState() }
        }
        return DispatchQueue.main.sync { MainActor.assumeIsolated { readBatteryState() } }
    }

    @MainActor
    private static func readBatteryState() -> String? {
        UIDevice.current.isBatteryMonitoringEnabled = true
        switch UIDevice.current.batteryState {
        case .charging: return "charging"
        case .full: return "full"
        case .unplugged: return "unplugged"
        case .unknown: return nil
        @unknown default: return nil
        }
    }

    /// `hw.machine`, OS version and build, and the Neural Engine core count where Core ML reports it.
    static func deviceReport() -> DeviceReport {
        var size = 0
        sysctlbyname("hw.machine", nil, &size, nil, 0)
        var buffer = [CChar](repeating: 0, count: max(size, 1))
        sysctlbyname("hw.machine", &buffer, &size, nil, 0)
        let machine = String(cString: buffer)
        let version = ProcessInfo.processInfo.operatingSystemVersion
        let osVersion = "\(version.majorVersion).\(version.minorVersion).\(version.patchVersion)"
        var buildSize = 0
        sysctlbyname("kern.osversion", nil, &buildSize, nil, 0)
        var build = [CChar](repeating: 0, count: max(buildSize, 1))
        sysctlbyname("kern.osversion", &build, &buildSize, nil, 0)
        return DeviceReport(machine: machine, osVersion: osVersion, osBuild: String(cString: build),
                            aneCores: CoreMLEngine.neuralEngineCores())
    }

    static var appVersion: String {
        let info = Bundle.main.infoDictionary ?? [:]
        let short = info["CFBundleShortVersionString"] as? String ?? "0"
        let build = info["CFBundleVersion"] as? String ?? "0"
        return "\(short) (\(build))"
    }
}
