/// A set of category codes as a bitset: bit `c` of the words `[start, start + count)`.
struct CategorySet: Sendable, Hashable {
    var start: Int32
    var count: Int32
}
