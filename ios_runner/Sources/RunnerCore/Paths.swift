import Foundation

/// Where jobs, results and the heartbeat live inside the app's Documents folder.
/// The host reaches the same paths through house_arrest as `/Documents/...`.
public struct RunnerPaths {
    public let documents: URL

    public init(documents: URL) {
        self.documents = documents
    }

    /// The app's Documents folder.
    public static func standard() -> RunnerPaths {
        let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        return RunnerPaths(documents: docs)
    }

    public var jobsDir: URL { documents.appendingPathComponent("jobs", isDirectory: true) }
    public var resultsDir: URL { documents.appendingPathComponent("results", isDirectory: true) }
    public var statusFile: URL { documents.appendingPathComponent("status.json") }

    public func jobFile(_ jobID: String) -> URL {
        jobsDir.appendingPathComponent(jobID, isDirectory: true).appendingPathComponent("job.json")
    }

    public func resultFile(_ jobID: String) -> URL {
        resultsDir.appendingPathComponent("\(jobID).json")
    }

    public func doneMarker(_ jobID: String) -> URL {
        resultsDir.appendingPathComponent("\(jobID).done")
    }

    /// Resolve a path from a job (relative to Documents); refuses paths that leave Documents.
    public func resolve(_ relative: String) throws -> URL {
        let url = documents.appendingPathComponent(relative).standardizedFileURL
        guard url.path.hasPrefix(documents.standardizedFileURL.path) else {
            throw RunnerError.badJob("path \(relative) leaves the Documents folder")
        }
        return url
    }

    /// Write the result atomically: temp file, rename, then the `.done` marker the host polls for.
    public func writeResult(_ result: BenchResult) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: resultsDir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(result)
        let final = resultFile(result.jobID)
        let tmp = resultsDir.appendingPathComponent("\(result.jobID).json.tmp")
        try data.write(to: tmp, options: [.atomic])
        if fm.fileExists(atPath: final.path) {
            _ = try fm.replaceItemAt(final, withItemAt: tmp)
        } else {
            try fm.moveItem(at: tmp, to: final)
        }
        try Data().write(to: doneMarker(result.jobID), options: [.atomic])
    }

    /// Heartbeat the host can read while a job runs.
    public func writeStatus(state: String, jobID: String?, phase: String?) {
        var payload: [String: Any] = ["state": state, "t": Date().timeIntervalSince1970]
        if let jobID { payload["job_id"] = jobID }
        if let phase { payload["phase"] = phase }
        if let data = try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys]) {
            try? data.write(to: statusFile, options: [.atomic])
        }
    }
}
