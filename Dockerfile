# syntax=docker/dockerfile:1
# ferry's container image. Two targets:
#   ferry     (the default, last stage): the proxy, `ferry -c /etc/ferry/ferry.ini`
#   demo-app  ferry-upstream, the demo/test HTTP app (JSON echo, WebSocket echo)
#   docker build -t ferry .                       docker build --target demo-app -t ferry-demo-app .
# scripts/chroot-image-check runs the same packages and commands in a
# debootstrapped bookworm chroot: keep the two in step.

# ---- build: Debian's -dev packages; llhttp's C sources come from node-llhttp.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libuv1-dev libinih-dev node-llhttp libcmocka-dev libssl-dev libnghttp2-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY include/ include/
COPY src/ src/
COPY tests/ tests/
# FERRY_TESTS=ON only because ferry-upstream (the demo app) lives under tests/;
# only the two binaries are built (libcmocka-dev is needed at configure time).
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TESTS=ON \
 && cmake --build build -j"$(nproc)" --target ferry ferry-upstream \
 && strip build/ferry build/tests/upstream/ferry-upstream

# ---- base: the shared libraries and an unprivileged user, nothing else.
FROM debian:bookworm-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libinih1 libssl3 libnghttp2-14 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ferry
USER ferry

# ---- demo-app: ferry-upstream. GET / answers JSON with "server": NAME; any
# path with Upgrade: websocket is a WebSocket echo.
FROM base AS demo-app
COPY --from=build /src/build/tests/upstream/ferry-upstream /usr/local/bin/ferry-upstream
ENV APP_PORT=3000
EXPOSE 3000
# bash's /dev/tcp: no curl in the image.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${APP_PORT:-3000} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["ferry-upstream"]
CMD ["--listen", "0.0.0.0:3000"]

# ---- ferry: the proxy (default target).
FROM base AS ferry
COPY --from=build /src/build/ferry /usr/local/bin/ferry
# A default config (the compose one); mount your own over it.
COPY config/compose.ini /etc/ferry/ferry.ini
# state_dir (tls_auto's CA), owned by ferry: a named volume mounted here
# starts with this owner and mode.
USER root
RUN install -d -o ferry -m 0700 /var/lib/ferry
USER ferry
ENV FERRY_PORT=8080 FERRY_TLS_PORT=8443 FERRY_ADMIN_PORT=9901
EXPOSE 8080 8443 9901
# ferry answers its own health check on the admin endpoint (`admin =` in the
# config); bash's /dev/tcp does the request, so the image needs no curl.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${FERRY_ADMIN_PORT:-9901} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ferry"]
CMD ["-c", "/etc/ferry/ferry.ini"]
