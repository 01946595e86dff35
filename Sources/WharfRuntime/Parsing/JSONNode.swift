import WharfCore

/// A JSON value with the path that leads to it, so every type error a model reader raises names
/// the exact place in the file (`learner.gradient_booster.model.trees[3].left_children`).
struct JSONNode {
    let value: JSONValue
    let path: String

    init(_ value: JSONValue, path: String = "") {
        self.value = value
        self.path = path
    }

    func error(_ message: String) -> WharfError {
        WharfError(.invalidModel, "\(path.isEmpty ? "document" : path): \(message)")
    }

    private func typeError(_ expected: String) -> WharfError {
        error("expected \(expected), found \(value.typeName)")
    }

    private func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func member(_ key: String) throws(WharfError) -> JSONNode {
        guard let node = try optionalMember(key) else { throw error("missing required key \"\(key)\"") }
        return node
    }

    func optionalMember(_ key: String) throws(WharfError) -> JSONNode? {
        guard case .object(let members) = value else { throw typeError("an object") }
        return members[key].map { JSONNode($0, path: child(key)) }
    }

    func array() throws(WharfError) -> [JSONNode] {
        switch value {
        case .array(let values):
            return values.enumerated().map { JSONNode($1, path: "\(path)[\($0)]") }
        case .numbers(let numbers):
            return numbers.enumerated().map { JSONNode(.number($1), path: "\(path)[\($0)]") }
        default:
            throw typeError("an array")
        }
    }

    func string() throws(WharfError) -> String {
        guard case .string(let string) = value else { throw typeError("a string") }
        return string
    }

    func double() throws(WharfError) -> Double {
        guard case .number(let number) = value else { throw typeError("a number") }
        return number
    }

    /// A number that some writers store as a string (XGBoost's `learner_model_param`).
    func numberOrNumericString() throws(WharfError) -> Double {
        switch value {
        case .number(let number): return number
        case .string(let text):
            guard let number = Double(text) else { throw error("\"\(text)\" is not a number") }
            return number
        default: throw typeError("a number")
        }
    }

    func int(in range: ClosedRange<Int>) throws(WharfError) -> Int {
        let number = try numberOrNumericString()
        guard let integer = Int(exactly: number), range.contains(integer) else {
            throw error("\(number) is not an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return integer
    }

    func doubles() throws(WharfError) -> [Double] {
        guard case .numbers(let numbers) = value else {
            if case .array = value { throw error("expected an array of numbers") }
            throw typeError("an array of numbers")
        }
        return numbers
    }

    func doubles(count: Int) throws(WharfError) -> [Double] {
        let numbers = try doubles()
        guard numbers.count == count else { throw error("has \(numbers.count) elements, expected \(count)") }
        return numbers
    }

    /// An array of integers, each within `range`.
    func ints(in range: ClosedRange<Int>) throws(WharfError) -> [Int] {
        let numbers = try doubles()
        var result = [Int]()
        result.reserveCapacity(numbers.count)
        for (index, number) in numbers.enumerated() {
            guard let integer = Int(exactly: number), range.contains(integer) else {
                throw error("element \(index) = \(number) is not an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            result.append(integer)
        }
        return result
    }

    func ints(count: Int, in range: ClosedRange<Int>) throws(WharfError) -> [Int] {
        let result = try ints(in: range)
        guard result.count == count else { throw error("has \(result.count) elements, expected \(count)") }
        return result
    }

    func strings() throws(WharfError) -> [String] {
        if case .numbers(let numbers) = value, numbers.isEmpty { return [] }
        return try array().map { node throws(WharfError) in try node.string() }
    }
}
