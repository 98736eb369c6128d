import RunnerCore
import SwiftUI

/// BenchRunner: a foreground app that runs the job named in its launch arguments and shows progress.
@main
struct BenchRunnerApp: App {
    @StateObject private var runner = JobRunner()

    var body: some Scene {
        WindowGroup {
            StatusView(runner: runner)
                .task {
                    await runner.runFromLaunchArguments()
                }
        }
    }
}

struct StatusView: View {
    @ObservedObject var runner: JobRunner

    var body: some View {
        VStack(alignment: .leading, spacing: 12) {
            Text("BenchRunner").font(.largeTitle).bold()
            Text("Launched by quantlab over USB. Keep this app in the foreground while it runs.")
                .font(.footnote)
                .foregroundStyle(.secondary)
            LabeledContent("Job", value: runner.lastJob ?? "none")
            LabeledContent("Phase", value: runner.phase)
            Spacer()
        }
        .padding()
    }
}
