# Shared by scripts/run and scripts/test: find the tree, install what is
# missing, build. Sourced, not run.
set -euo pipefail

FERRY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build and the tests need. node-llhttp ships llhttp's C
# sources, which CMake builds into a static library.
FERRY_PACKAGES=(build-essential cmake pkg-config libuv1-dev libinih-dev libcmocka-dev
                node-llhttp libssl-dev libnghttp2-dev libjansson-dev python3 curl procps iproute2)
# Only scripts/test needs these: compose_config validates docker-compose.yml
# with Debian's docker-compose (no Docker engine needed); dash_browser loads
# the admin dashboard in headless Chromium through selenium (no PyPI here);
# the TLS and sni tests make certificates with the openssl command; the
# recipes of docs/recipes.md run with the apps they are about
# (test_recipes.py: Flask, Django, express, python-socketio, Jupyter); the
# ACME tests run pebble and pebble-challtestsrv (Debian package pebble);
# python3-yaml parses docker-compose.yml and the deploy/ manifests.
FERRY_TEST_PACKAGES=(docker-compose python3-websockets python3-yaml clang libclang-rt-14-dev
                     chromium chromium-driver python3-selenium openssl
                     python3-flask python3-django nodejs node-express python3-socketio
                     jupyter-notebook python3-ipykernel
                     python3-h2 nghttp2-client pebble)

# Only scripts/docker-check needs these: Debian's Docker engine, a base image
# made with debootstrap when no registry can be reached, compose v1.
FERRY_DOCKER_PACKAGES=(docker.io debootstrap docker-compose curl util-linux)

ferry_missing_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    echo "${missing[@]:-}"
}

# Installs the given packages when some are missing: with apt-get when root,
# otherwise prints the exact command and fails.
ferry_install() {
    local missing
    missing=$(ferry_missing_packages "$@")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: $missing" >&2
        echo "install them with: sudo apt-get install -y $missing" >&2
        return 1
    fi
    echo "installing: $missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >&2
}

# ferry_build DIR [cmake args...]
ferry_build() {
    local dir=$1
    shift
    cmake -S "$FERRY_ROOT" -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j "$(nproc)"
}
