#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import WharfCore

/// Model files by content: `<root>/sha256/<first two digits>/<digest>`.
///
/// An upload streams into a temporary file in the same directory while it is hashed and
/// counted; only a complete upload within the size limit is fsynced and renamed onto its
/// address (an atomic step), so a crash or a cut connection leaves at most a temporary file,
/// never a partial artifact under a digest. Every read hashes the file again and refuses one
/// that no longer matches its name.
public struct ArtifactStore: Sendable {
    public let root: String
    public let sizeLimit: Int

    public init(root: String, sizeLimit: Int) throws(WharfError) {
        self.root = root
        self.sizeLimit = sizeLimit
        do {
            try FileManager.default.createDirectory(atPath: root + "/sha256", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/incoming", withIntermediateDirectories: true)
        } catch {
            throw WharfError(.io, "cannot create the artifact directory \(root): \(error.localizedDescription)")
        }
    }

    func path(of digest: String) -> String {
        "\(root)/sha256/\(digest.prefix(2))/\(digest)"
    }

    public func contains(_ reference: ArtifactReference) -> Bool {
        guard (try? RegistryName.checkDigest(reference.sha256)) != nil,
              let attributes = try? FileManager.default.attributesOfItem(atPath: path(of: reference.sha256)),
              let size = attributes[.size] as? Int
        else { return false }
        return size == reference.size
    }

    /// Starts an upload: append the chunks as they arrive, then `finish()` (or drop it: a
    /// dropped upload leaves nothing).
    public func beginUpload() throws(WharfError) -> Upload {
        try Upload(store: self)
    }

    /// Writes the chunks to the store; returns the artifact's digest and size.
    public func write(_ chunks: AsyncThrowingStream<[UInt8], any Error>) async throws -> ArtifactReference {
        let upload = try beginUpload()
        for try await chunk in chunks { try upload.append(chunk) }
        return try upload.finish()
    }

    /// One artifact on its way in: a temporary file, hashed and counted as it grows.
    public final class Upload {
        private let store: ArtifactStore
        private let temporary: String
        private var descriptor: Int32
        private var hasher = SHA256()
        private var size = 0

        init(store: ArtifactStore) throws(WharfError) {
            self.store = store
            temporary = "\(store.root)/incoming/\(UUID().uuidString)"
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            guard descriptor >= 0 else { throw WharfError(.io, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        }

        deinit {
            if descriptor >= 0 { close(descriptor) }
            unlink(temporary)
        }

        public func append(_ chunk: UnsafeRawBufferPointer) throws(WharfError) {
            size += chunk.count
            guard size <= store.sizeLimit else {
                throw WharfError(.payloadTooLarge, "the artifact is larger than the limit of \(store.sizeLimit) bytes")
            }
            hasher.update(chunk)
            try ArtifactStore.writeAll(descriptor, chunk)
        }

        private static func flushDirectory(_ path: String) throws(WharfError) {
            let directory = open(path, O_RDONLY | O_DIRECTORY)
            guard directory >= 0 else { throw WharfError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(directory) }
            guard fsync(directory) == 0 else { throw WharfError(.io, "cannot flush \(path): \(String(cString: strerror(errno)))") }
        }

        public func append(_ chunk: [UInt8]) throws {
            try chunk.withUnsafeBytes { bytes in try append(bytes) }
        }

        /// Flushes the file to disk and renames it onto its digest (atomic).
        public func finish() throws(WharfError) -> ArtifactReference {
            guard size > 0 else { throw WharfError(.invalidInput, "the artifact is empty") }
            guard fsync(descriptor) == 0 else { throw WharfError(.io, "cannot flush the artifact: \(String(cString: strerror(errno)))") }
            close(descriptor)
            descriptor = -1
            let digest = hasher.finalize().hex
            let destination = store.path(of: digest)
            try? FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // Same content, same name: an existing artifact is the same bytes, and rename replaces it atomically.
            guard rename(temporary, destination) == 0 else {
                throw WharfError(.io, "cannot store the artifact: \(String(cString: strerror(errno)))")
            }
            // The rename is durable once its directory is flushed, and that directory's own entry
            // once its parent is (it may have just been made): without them a crash could lose
            // an artifact that a version registered right after already names.
            let shard = (destination as NSString).deletingLastPathComponent
            for directory in [shard, (shard as NSString).deletingLastPathComponent] { try Self.flushDirectory(directory) }
            return ArtifactReference(sha256: digest, size: size)
        }
    }

    /// The artifact's path, after checking, a chunk at a time, that its bytes still hash to
    /// its name.
    public func verifiedPath(_ digest: String) throws(WharfError) -> String {
        try RegistryName.checkDigest(digest)
        let path = path(of: digest)
        var hasher = SHA256()
        try Self.readChunks(path) { chunk in hasher.update(chunk) }
        guard hasher.finalize().hex == digest else {
            throw WharfError(.internalError, "artifact \(digest) is corrupted on disk (its bytes no longer match their sha256)")
        }
        return path
    }

    /// Calls `body` with each chunk of the file (1 MiB at most).
    static func readChunks(_ path: String, _ body: (UnsafeRawBufferPointer) throws(WharfError) -> Void) throws(WharfError) {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw errno == ENOENT
                ? WharfError(.notFound, "no artifact at \((path as NSString).lastPathComponent)")
                : WharfError(.io, "cannot open an artifact: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = systemRead(descriptor, buffer.baseAddress!, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw WharfError(.io, "cannot read an artifact: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    /// The whole artifact, verified (for clients and tests; the HTTP route streams instead).
    public func read(_ digest: String) throws(WharfError) -> [UInt8] {
        let path = try verifiedPath(digest)
        var bytes: [UInt8] = []
        try Self.readChunks(path) { chunk in bytes.append(contentsOf: chunk) }
        return bytes
    }

    fileprivate static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws(WharfError) {
        var offset = 0
        while offset < bytes.count {
            let written = systemWrite(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw WharfError(.io, "cannot write the artifact: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }
}

/// Reads a file a chunk at a time, for streaming it into a response.
/// Sendable so that its reads can run on NIO's blocking-I/O pool; one reader serves one
/// response, a read at a time.
final class ArtifactReader: @unchecked Sendable {
    private let descriptor: Int32

    init(path: String) throws(WharfError) {
        descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw WharfError(.io, "cannot open an artifact: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    /// The next chunk (up to 1 MiB), or nil at the end.
    func next() throws(WharfError) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { systemRead(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw WharfError(.io, "cannot read an artifact: \(String(cString: strerror(errno)))")
            }
            if count == 0 { return nil }
            chunk.removeLast(chunk.count - count)
            return chunk
        }
    }
}

private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

private func systemRead(_ descriptor: Int32, _ bytes: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(descriptor, bytes, count)
}
