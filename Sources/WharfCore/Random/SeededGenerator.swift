/// A small, fast, seedable random number generator (SplitMix64).
///
/// Wherever Wharf draws random numbers (synthetic benchmark rows, traffic splits, sampling), it
/// takes a generator, so tests and benchmarks can pass a seeded one and get exact, repeatable
/// results.
///
/// ```swift
/// var random = SeededGenerator(seed: 42)
/// let pick = Int.random(in: 0..<10, using: &random)
/// ```
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
