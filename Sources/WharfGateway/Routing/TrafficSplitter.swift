import WharfCore

/// Chooses the version a request goes to, and whether it is copied to the shadow.
///
/// A request without a sticky key draws a uniform number from the given random source; a
/// request with one uses a hash of the key instead, so the same key lands on the same point
/// every time. The point falls into the targets' weight intervals, laid out in spec order: a
/// canary listed first (as the canary controller does) only ever takes keys from the stable
/// version as its share grows, so a user who reached the new version stays on it.
public enum TrafficSplitter {
    /// The index of the chosen target; nil when no target has weight.
    public static func choose(
        _ targets: [DeploymentSpec.Target], key: String?, random: inout some RandomNumberGenerator
    ) -> Int? {
        let total = targets.reduce(0) { $0 + max(0, $1.weight) }
        guard total > 0 else { return nil }
        let point = (key.map(unitHash) ?? unit(&random)) * total
        var cumulative = 0.0
        var last: Int?
        for (index, target) in targets.enumerated() where target.weight > 0 {
            cumulative += target.weight
            last = index
            if point < cumulative { return index }
        }
        return last
    }

    /// Whether this request is copied to the shadow.
    public static func sampleShadow(share: Double, random: inout some RandomNumberGenerator) -> Bool {
        share > 0 && unit(&random) < share
    }

    /// A uniform number in [0, 1) from 53 random bits.
    static func unit(_ random: inout some RandomNumberGenerator) -> Double {
        Double(random.next() >> 11) * 0x1p-53
    }

    /// A number in [0, 1) fixed by the key: FNV-1a over its bytes, then SplitMix64's finalizer
    /// so that similar keys ("user-1", "user-2") spread over the whole range.
    public static func unitHash(_ key: String) -> Double {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        hash ^= hash >> 31
        return Double(hash >> 11) * 0x1p-53
    }
}
