# One image for every Wharf service; the command chooses which:
#   docker run IMAGE registry --host 0.0.0.0 …   |   gateway …   |   serve --registry … --model NAME@production
# Build:  docker build -t wharf:latest .
# Stage 1 builds a static-stdlib release binary with the Swift toolchain; stage 2 runs it on a
# slim Debian as an unprivileged user with nothing else installed but the C libraries it needs.
FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so a source change does not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product wharf --static-swift-stdlib \
 && install -D .build/release/wharf /out/wharf

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libsqlite3-0 libcurl4 libxml2 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin wharf \
 && mkdir -p /data && chown wharf /data
COPY --from=build /out/wharf /usr/local/bin/wharf
USER 10001
WORKDIR /data
ENV WHARF_DATA_DIR=/data
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["--help"]
