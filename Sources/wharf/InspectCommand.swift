import ArgumentParser
import Foundation
import WharfCore
import WharfRuntime

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a model file as JSON: format, task, features, classes, trees, depth."
    )

    @Option(help: "The model file.")
    var model: String

    struct Report: Encodable {
        var format: String
        var task: String
        var objective: String
        var features: Int
        var featureNames: [String]?
        var categoricalFeatures: [Int]
        var classes: [String]
        var output: OutputLayout
        var trees: Int
        var depth: Int
        var producer: String?
        var notes: [String]
        var sizeBytes: Int

        enum CodingKeys: String, CodingKey {
            case format, task, objective, features, classes, output, trees, depth, producer, notes
            case featureNames = "feature_names"
            case categoricalFeatures = "categorical_features"
            case sizeBytes = "size_bytes"
        }
    }

    func run() throws {
        try reportingErrors {
            let loaded = try loadModel(model)
            let metadata = loaded.metadata
            let size = (try? FileManager.default.attributesOfItem(atPath: model)[.size] as? Int) ?? 0
            let report = Report(
                format: metadata.format.rawValue,
                task: metadata.task.rawValue,
                objective: metadata.objective,
                features: metadata.featureCount,
                featureNames: metadata.featureNames,
                categoricalFeatures: metadata.categoricalFeatures,
                classes: metadata.classes,
                output: metadata.output,
                trees: metadata.treeCount,
                depth: metadata.maxDepth,
                producer: metadata.producer,
                notes: metadata.notes,
                sizeBytes: size
            )
            writeStandardOutput(try encodeJSON(report))
        }
    }
}
