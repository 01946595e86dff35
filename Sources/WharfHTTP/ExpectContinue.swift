import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with `100 Continue` as soon as the request head arrives.
/// Clients that ask before sending a large body wait otherwise: curl, for a second, on every
/// upload over 1 MB (a model artifact, a 1000-row inference request).
public final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundOut = HTTPResponsePart

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.headerFields[.expect]?.lowercased() == "100-continue" {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1, as every Wharf service serves it.
    public static var wharfHTTP1: HTTPServerBuilder {
        HTTPServerBuilder { responder in
            WharfHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: .wharf))
        }
    }
}

/// Hummingbird's HTTP/1 channel, reading large bodies in large pieces.
///
/// NIO reads at most 64 KiB a time by default, and every piece travels alone from the event
/// loop to the request's task. A 1000-row inference request (600 kB of JSON) arrived in ten
/// pieces; with up to 1 MiB a read it takes one or two. The read size adapts to what arrives,
/// so a connection of small requests keeps small buffers.
public struct WharfHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    public typealias Value = HTTP1Channel.Value

    /// The largest read.
    public static var maximumReadBytes: Int { 1 << 20 }

    let inner: HTTP1Channel

    public init(inner: HTTP1Channel) {
        self.inner = inner
    }

    public var responder: HTTPChannelHandler.Responder { inner.responder }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let sizing = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: Self.maximumReadBytes)
        do {
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: sizing)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    public func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTP1Channel.Configuration {
    /// With ``ExpectContinueHandler``.
    public static var wharf: HTTP1Channel.Configuration {
        .init(additionalChannelHandlers: [ExpectContinueHandler()])
    }
}
