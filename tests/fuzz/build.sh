#!/usr/bin/env bash
# Builds ferry's libFuzzer targets with clang into OUTDIR.
#   tests/fuzz/build.sh OUTDIR [TARGET...]     (default: every fuzz_*.c here)
# Each target is tests/fuzz/fuzz_NAME.c -> OUTDIR/fuzz_NAME, compiled with the
# pure modules it drives (http_parse, http_write, http_rewrite, http_path, config, config_keys, config_value,
# route, proxy_proto, tls_hello, util, strbuf)
# and llhttp from Debian's node-llhttp in strict mode, under libFuzzer + ASan
# + UBSan.
# A target is rebuilt only when one of its inputs is newer than it.
# Exit status 77: no clang or no libFuzzer runtime (libclang-rt-14-dev).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: build.sh OUTDIR [TARGET...]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)

CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
    for c in clang-14 clang; do
        if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
    done
fi
if [ -z "$CC" ]; then
    echo "fuzz: clang not found (apt-get install clang libclang-rt-14-dev): skipping" >&2
    exit 77
fi
LLHTTP_SRC=${LLHTTP_SRC_DIR:-/usr/share/llhttp}
LLHTTP_INC=${LLHTTP_INCLUDE_DIR:-/usr/share/include/llhttp}
if [ ! -f "$LLHTTP_SRC/llhttp.c" ] || [ ! -f "$LLHTTP_INC/llhttp.h" ]; then
    echo "fuzz: llhttp sources not found in $LLHTTP_SRC (apt-get install node-llhttp): skipping" >&2
    exit 77
fi

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -g -O1 $SAN -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1 -DFERRY_VERSION=\"fuzz\""
CFLAGS="$CFLAGS -Wall -Wextra -Wno-unused-parameter ${FUZZ_CFLAGS:-}"
INC="-I$root/include -isystem $LLHTTP_INC"

# Does the runtime exist? A one-line fuzzer links only when it does.
probe="$out/.probe"
if [ ! -x "$probe" ]; then
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        >"$out/.probe.c"
    if ! $CC -fsanitize=fuzzer,address,undefined "$out/.probe.c" -o "$probe" 2>"$out/.probe.log"; then
        echo "fuzz: $CC cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev): skipping" >&2
        sed 's/^/  /' "$out/.probe.log" >&2
        exit 77
    fi
fi

# llhttp once, as objects (its generated code is not ours: no warnings).
llobjs=()
for f in llhttp api http; do
    o="$out/llhttp_$f.o"
    if [ ! -f "$o" ] || [ "$LLHTTP_SRC/$f.c" -nt "$o" ]; then
        $CC -std=gnu11 -g -O1 $SAN -DLLHTTP_STRICT_MODE=1 -I"$LLHTTP_INC" -w -c "$LLHTTP_SRC/$f.c" -o "$o"
    fi
    llobjs+=("$o")
done

# ferry's pure modules once, as objects shared by every target.
objs=()
for src in http_parse http_write http_rewrite http_path util strbuf config config_keys config_value route proxy_proto tls_hello; do
    o="$out/ferry_$src.o"
    stale=0
    [ -f "$o" ] || stale=1
    for dep in "$root/src/$src.c" "$root"/src/*.h "$root"/include/ferry/*.h; do
        [ $stale -eq 1 ] && break
        [ "$dep" -nt "$o" ] && stale=1
    done
    if [ $stale -eq 1 ]; then
        $CC $CFLAGS $INC -c "$root/src/$src.c" -o "$o.tmp"
        mv "$o.tmp" "$o"
    fi
    objs+=("$o")
done

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$here"/fuzz_*.c; do
        t=$(basename "$f" .c)
        targets+=("${t#fuzz_}")
    done
fi

for t in "${targets[@]}"; do
    t=${t#fuzz_}
    src="$here/fuzz_$t.c"
    bin="$out/fuzz_$t"
    [ -f "$src" ] || { echo "fuzz: no target $src" >&2; exit 2; }
    stale=0
    [ -x "$bin" ] || stale=1
    if [ $stale -eq 0 ]; then
        for dep in "$src" "$here/fuzz_common.h" "$root"/include/ferry/*.h "${objs[@]}" "${llobjs[@]}"; do
            if [ "$dep" -nt "$bin" ]; then stale=1; break; fi
        done
    fi
    [ $stale -eq 1 ] || continue
    echo "fuzz: building fuzz_$t" >&2
    $CC $CFLAGS $INC "$src" "${objs[@]}" "${llobjs[@]}" -linih -o "$bin.tmp"
    mv "$bin.tmp" "$bin"
done
