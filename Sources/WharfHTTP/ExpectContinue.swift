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
    /// HTTP/1, as every Wharf service serves it.
    public static var wharfHTTP1: HTTPServerBuilder {
        .http1(configuration: HTTP1Channel.Configuration.wharf)
    }
}

extension HTTP1Channel.Configuration {
    /// With ``ExpectContinueHandler``.
    public static var wharf: HTTP1Channel.Configuration {
        .init(additionalChannelHandlers: [ExpectContinueHandler()])
    }
}
