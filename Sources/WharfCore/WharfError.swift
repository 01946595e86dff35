/// The one error type Wharf code throws across module boundaries.
///
/// An error is created where the fault is known, with a ``Code`` that says what kind of fault it
/// is and a message that names the problem and, where there is one, the place (a JSON path, a
/// line, a row and column). The HTTP status is chosen from the code at the boundary, once.
/// `description` never carries secrets: callers put only facts about the input in `message`.
///
/// ```swift
/// throw WharfError(.invalidModel, "tree 3: left_children[7] = 912 is out of range 0..<15")
/// ```
public struct WharfError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of fault this is. Open for new kinds without breaking callers' `switch`es.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidModel
            case unsupportedModel
            case invalidInput
            case notFound
            case unavailable
            case payloadTooLarge
            case io
            case internalError
            case conflict
            case unauthorized
            case forbidden
        }

        private let base: Base

        /// The model file is malformed, inconsistent or hostile.
        public static let invalidModel = Code(base: .invalidModel)
        /// The model file is well-formed but uses something Wharf does not evaluate.
        public static let unsupportedModel = Code(base: .unsupportedModel)
        /// A request, CSV cell or argument is wrong.
        public static let invalidInput = Code(base: .invalidInput)
        /// A named thing does not exist.
        public static let notFound = Code(base: .notFound)
        /// Not ready, shutting down or overloaded: try again later.
        public static let unavailable = Code(base: .unavailable)
        /// A request body over the configured limit.
        public static let payloadTooLarge = Code(base: .payloadTooLarge)
        /// Reading or writing a file failed.
        public static let io = Code(base: .io)
        /// The request contradicts the current state (an alias onto an archived version).
        public static let conflict = Code(base: .conflict)
        /// No valid credentials (a missing or wrong bearer token).
        public static let unauthorized = Code(base: .unauthorized)
        /// Credentials are fine but the action is refused by policy (an unvalidated promotion).
        public static let forbidden = Code(base: .forbidden)
        /// A broken invariant inside Wharf; never the caller's fault.
        public static let internalError = Code(base: .internalError)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
