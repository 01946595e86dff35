import Foundation
import WharfCore

/// Loads model files, detecting the format from the content (never the file name).
public enum ModelLoader {
    /// Files larger than this are refused before being read: 2 GiB.
    public static let defaultSizeLimit = 2 << 30

    /// Reads and loads the model at `path`.
    public static func load(path: String, sizeLimit: Int = defaultSizeLimit) throws(WharfError) -> Model {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw WharfError(.notFound, "model file \(path) cannot be read: no such file or no permission")
        }
        if let size = attributes[.size] as? Int, size > sizeLimit {
            throw WharfError(.invalidModel, "model file \(path) is \(size) bytes, over the limit of \(sizeLimit)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw WharfError(.io, "model file \(path) cannot be read")
        }
        return try load(bytes: [UInt8](data))
    }

    /// Loads a model from its file's bytes.
    public static func load(bytes: [UInt8]) throws(WharfError) -> Model {
        // A UTF-8 byte order mark (a file saved by some editors) is not part of the JSON.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return try load(bytes: Array(bytes.dropFirst(3))) }
        switch try detectFormat(bytes) {
        case .xgboostJSON:
            let document = try JSONParser.parse(bytes)
            return try loadJSONDocument(document)
        case .xgboostUBJSON:
            let (metadata, evaluator) = try XGBoostReader.read(try UBJSONParser.parse(bytes), format: .xgboostUBJSON)
            return Model(metadata: metadata, evaluator: .xgboost(evaluator))
        case .lightgbmText:
            let (metadata, evaluator) = try LightGBMReader.read(bytes)
            return Model(metadata: metadata, evaluator: .lightgbm(evaluator))
        case .wharfLinear:
            return try loadJSONDocument(try JSONParser.parse(bytes))
        }
    }

    /// JSON documents are told apart by their keys: XGBoost's `learner`, or Wharf's `format`.
    private static func loadJSONDocument(_ document: JSONValue) throws(WharfError) -> Model {
        guard case .object(let members) = document else {
            throw WharfError(.invalidModel, "a JSON model must be an object, found \(document.typeName)")
        }
        if members["learner"] != nil {
            let (metadata, evaluator) = try XGBoostReader.read(document, format: .xgboostJSON)
            return Model(metadata: metadata, evaluator: .xgboost(evaluator))
        }
        if case .string(LinearModelReader.formatName) = members["format"] {
            let (metadata, model) = try LinearModelReader.read(document)
            return Model(metadata: metadata, evaluator: .linear(model))
        }
        throw WharfError(.invalidModel, "a JSON document that is neither an XGBoost model (no \"learner\" key) nor a Wharf linear model (\"format\": \"wharf-linear\")")
    }

    /// The format of a model file, from its first bytes. JSON files are classified as
    /// ``ModelFormat/xgboostJSON`` until their keys are read.
    public static func detectFormat(_ bytes: [UInt8]) throws(WharfError) -> ModelFormat {
        guard !bytes.isEmpty else { throw WharfError(.invalidModel, "the model file is empty") }
        // UBJSON objects start with '{' and then a length marker, '$' or '#'; JSON never does.
        if bytes.count >= 2, bytes[0] == UInt8(ascii: "{"), "iUIlL$#}".utf8.contains(bytes[1]) {
            if bytes[1] != UInt8(ascii: "}") || bytes.count == 2 { return .xgboostUBJSON }
        }
        var start = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        while start < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[start]) { start += 1 }
        if start < bytes.count, bytes[start] == UInt8(ascii: "[") {
            // Not a model, but JSON: parse it so the error says what it is.
            return .xgboostJSON
        }
        if start < bytes.count, bytes[start] == UInt8(ascii: "{") {
            let prefix = String(decoding: bytes[start..<min(bytes.count, start + 4096)], as: UTF8.self)
            return prefix.contains("\"\(LinearModelReader.formatName)\"") ? .wharfLinear : .xgboostJSON
        }
        if bytes[start...].starts(with: "tree\n".utf8) || bytes[start...].starts(with: "tree\r\n".utf8) {
            return .lightgbmText
        }
        if bytes[0] == 0x08 {
            throw WharfError(.unsupportedModel, "this looks like an ONNX (protobuf) model, which this build does not evaluate; export XGBoost JSON, LightGBM text or Wharf linear JSON")
        }
        if bytes[0] == 0x80 {
            throw WharfError(.unsupportedModel, "this looks like a Python pickle; pickles are never loaded (they run code): save the model with the library's own save_model")
        }
        throw WharfError(.invalidModel, "unrecognized model format: not XGBoost JSON or UBJSON, LightGBM text, or Wharf linear JSON")
    }
}
