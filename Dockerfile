# ferry's container image. Two targets:
#   ferry     (the default, last stage): the proxy alone on an empty base
#             (`scratch`): the binary (libuv, inih and OpenSSL linked in), the
#             glibc it runs on, CA certificates and a passwd line; about 7 MB.
#             `ferry -c /etc/ferry/ferry.ini`
#   demo-app  ferry-upstream, the demo/test HTTP app (JSON echo, WebSocket echo)
#   docker build -t ferry .                       docker build --target demo-app -t ferry-demo-app .
# scripts/docker-check builds both and runs them under compose and swarm.
# scripts/chroot-image-check runs the build stage's packages and commands in a
# debootstrapped bookworm chroot: keep the two in step.

# ---- build: Debian's -dev packages; llhttp's C sources come from node-llhttp.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libuv1-dev libinih-dev node-llhttp libcmocka-dev libssl-dev libnghttp2-dev libjansson-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY include/ include/
COPY src/ src/
COPY tests/ tests/
# FERRY_TESTS=ON only because ferry-upstream (the demo app) lives under tests/;
# only the two binaries are built (libcmocka-dev is needed at configure time).
# FERRY_STATIC_DEPS links libuv, inih and OpenSSL from their static archives.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TESTS=ON -DFERRY_STATIC_DEPS=ON \
 && cmake --build build -j"$(nproc)" --target ferry ferry-upstream \
 && strip build/ferry build/tests/upstream/ferry-upstream
# The ferry image's whole file system: the binary, every shared object ldd
# names (glibc and its loader), the CA bundle (upstream TLS, ACME), a passwd
# and group line for the unprivileged user, and state_dir (the local CA and
# ACME state; a named volume mounted there starts with this owner and mode).
RUN mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/etc/ferry /rootfs/var/lib/ferry \
 && cp build/ferry /rootfs/usr/local/bin/ferry \
 && for lib in $(ldd build/ferry | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do \
      cp --parents -L "$lib" /rootfs/; done \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && echo 'ferry:x:10001:10001:ferry:/nonexistent:/usr/sbin/nologin' >/rootfs/etc/passwd \
 && echo 'ferry:x:10001:' >/rootfs/etc/group \
 && echo 'hosts: files dns' >/rootfs/etc/nsswitch.conf \
 && chmod 0700 /rootfs/var/lib/ferry

# ---- base: the demo app's shared library and an unprivileged user.
FROM debian:bookworm-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libinih1 \
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

# ---- ferry: the proxy (default target), on nothing but what it needs.
FROM scratch AS ferry
COPY --from=build /rootfs/ /
# COPY of a directory copies what is in it: copy var/lib so that ferry/ itself
# (state_dir, 0700) belongs to the user; a named volume mounted there starts so.
COPY --from=build --chown=10001:10001 /rootfs/var/lib/ /var/lib/
# A default config (the compose one); mount your own over it.
COPY config/compose.ini /etc/ferry/ferry.ini
ENV PATH=/usr/local/bin FERRY_PORT=8080 FERRY_TLS_PORT=8443 FERRY_ADMIN_PORT=9901 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER ferry
EXPOSE 8080 8443 9901
# No shell in the image: ferry asks its own admin endpoint (`admin =` of the
# config named here) for /healthz. Keep an `admin =` line in your config.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["ferry", "--healthcheck", "-c", "/etc/ferry/ferry.ini"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ferry"]
CMD ["-c", "/etc/ferry/ferry.ini"]
