import HTTPTypes
import HummingbirdCore
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
    /// How long a connection may stay silent: idle between requests, or stalled in the middle of
    /// a request's body (a client that promised more bytes than it sends). Longer than the
    /// gateway keeps its idle connections to replicas, so it is the gateway that closes them.
    public static let wharfIdleTimeout = TimeAmount.seconds(60)

    /// HTTP/1, as every Wharf service serves it; connections silent for `idleTimeout` are
    /// closed (a request being answered is not silence).
    public static func wharfHTTP1(idleTimeout: TimeAmount? = wharfIdleTimeout) -> HTTPServerBuilder {
        .http1(configuration: HTTP1Channel.Configuration.wharf(idleTimeout: idleTimeout))
    }

    public static var wharfHTTP1: HTTPServerBuilder { wharfHTTP1() }
}

extension HTTP1Channel.Configuration {
    /// With ``ExpectContinueHandler``; without an idle timeout (Hummingbird's timer counts only
    /// what passes through its codec, so it suits only channels that see every request).
    public static var wharf: HTTP1Channel.Configuration {
        wharf(idleTimeout: nil)
    }

    public static func wharf(idleTimeout: TimeAmount?) -> HTTP1Channel.Configuration {
        .init(additionalChannelHandlers: [ExpectContinueHandler()], idleTimeout: idleTimeout)
    }
}
