#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns `count` scores into probabilities in place, in double precision, the way LightGBM and
/// scikit-learn do: shift by the largest score, exponentiate, divide by the sum.
@inline(__always)
func applySoftmax(_ values: UnsafeMutablePointer<Double>, count: Int) {
    var largest = values[0]
    for k in 1..<count { largest = max(largest, values[k]) }
    var sum = 0.0
    for k in 0..<count {
        values[k] = exp(values[k] - largest)
        sum += values[k]
    }
    for k in 0..<count { values[k] /= sum }
}
