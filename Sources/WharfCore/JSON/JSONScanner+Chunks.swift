#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// Reading a large numeric array on several cores.
///
/// A 1000-row request of 30 features is about 600 kB of JSON, and turning its 30,000 decimals
/// into doubles is most of the request's cost. The array's extent is found first with `memchr`
/// (many gigabytes a second), its bytes are cut after commas into a few chunks a core, and the
/// chunks are read at once by the ordinary token loop. Any error sends the whole array back to
/// the one-pass reader, so that the message and its byte offset are exactly the same.
extension JSONScanner {
    /// Arrays shorter than this are read in one pass: a fork costs more than it saves.
    static let chunkedDataThreshold = 64 * 1024
    /// Chunks are handed out to the cores as they finish, so a core that runs slower (its
    /// cache holds none of the body, or it shares its time with another thread) takes fewer.
    static var chunksPerCore: Int { 4 }
    /// The least bytes worth a chunk of their own.
    static let minimumChunkBytes = 32 * 1024

    static let processorCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Reads the array at the current position in chunks when it is large and well-formed as far
    /// as brackets go; returns false, having read nothing, when the one-pass reader should.
    mutating func readNumericDataInChunks(into values: inout [Double], maxElements: Int, maxDepth: Int, asFloat: Bool) throws(Failure) -> Bool {
        guard Self.processorCount > 1, peek() == UInt8(ascii: "["),
              bytes.count - position > Self.chunkedDataThreshold,
              let close = matchingBracket(from: position, maxDepth: maxDepth),
              close - position > Self.chunkedDataThreshold
        else { return false }
        let open = position
        let ranges = chunkRanges(from: open + 1, to: close)
        guard ranges.count > 1 else { return false }

        // Each chunk writes only its own slot; concurrentPerform returns once all are done.
        nonisolated(unsafe) let bytes = self.bytes
        let perChunk = values.capacity / ranges.count + 64
        let results = UnsafeMutableBufferPointer<[Double]?>.allocate(capacity: ranges.count)
        results.initialize(repeating: nil)
        defer { results.deinitialize().deallocate() }
        nonisolated(unsafe) let slots = results
        DispatchQueue.concurrentPerform(iterations: ranges.count) { index in
            var chunk = JSONScanner(UnsafeRawBufferPointer(rebasing: bytes[ranges[index]]))
            var state = DataTokenState(expectingValue: true, justOpened: index == 0)
            var read: [Double] = []
            read.reserveCapacity(perChunk)
            do {
                try chunk.readDataTokens(into: &read, maxElements: maxElements, maxDepth: maxDepth, state: &state, wholeValue: false, asFloat: asFloat)
                // The last chunk runs up to the closing bracket, which needs a value (or a
                // nested array's end) before it; the others end just after a comma.
                let isLast = index == ranges.count - 1
                guard isLast ? !state.expectingValue : state.expectingValue else { return }
                slots[index] = read
            } catch {
                return
            }
        }
        let total = results.reduce(0) { $0 + ($1?.count ?? 0) }
        guard results.allSatisfy({ $0 != nil }), values.count + total <= maxElements else { return false }
        values.reserveCapacity(values.count + total)
        for chunk in results { values.append(contentsOf: chunk!) }
        position = close + 1
        return true
    }

    /// The offset of the ']' closing the array opening at `open`, found with `memchr`; nil when
    /// the array is not closed, nests deeper than `maxDepth`, or holds a string (whose brackets
    /// would not be structure).
    func matchingBracket(from open: Int, maxDepth: Int) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        var depth = 1
        var cursor = open + 1
        while depth > 0 {
            guard let close = Self.find(UInt8(ascii: "]"), base, from: cursor, to: bytes.count) else { return nil }
            var opens = 0
            var scan = cursor
            while let next = Self.find(UInt8(ascii: "["), base, from: scan, to: close) {
                opens += 1
                scan = next + 1
            }
            // Every '[' of this stretch comes before its ']': the deepest point is just before it.
            depth += opens
            guard depth <= maxDepth else { return nil }
            depth -= 1
            cursor = close + 1
        }
        let close = cursor - 1
        guard Self.find(UInt8(ascii: "\""), base, from: open, to: close) == nil else { return nil }
        return close
    }

    /// Up to `chunksPerCore` ranges a core over `start..<end` (the inside of an array, without
    /// its closing bracket), each but the first starting just after a comma.
    func chunkRanges(from start: Int, to end: Int) -> [Range<Int>] {
        guard let base = bytes.baseAddress else { return [] }
        let count = min(Self.processorCount * Self.chunksPerCore, (end - start) / Self.minimumChunkBytes)
        guard count > 1 else { return [] }
        var ranges: [Range<Int>] = []
        var lower = start
        for index in 1..<count {
            let target = max(lower, start + (end - start) * index / count)
            guard let comma = Self.find(UInt8(ascii: ","), base, from: target, to: end) else { break }
            ranges.append(lower..<(comma + 1))
            lower = comma + 1
        }
        ranges.append(lower..<end)
        return ranges
    }

    private static func find(_ byte: UInt8, _ base: UnsafeRawPointer, from: Int, to: Int) -> Int? {
        guard from < to, let found = memchr(base + from, Int32(byte), to - from) else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }
}
