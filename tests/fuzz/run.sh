#!/usr/bin/env bash
# Runs one libFuzzer target for a short, fixed time (the ctest entries
# fuzz_NAME call this):
#   tests/fuzz/run.sh TARGET [SECONDS] [BUILD_DIR]
# SECONDS: the argument, else $FERRY_FUZZ_SECONDS, else 10. BUILD_DIR:
# where build.sh puts the binaries (default build/fuzz). The target runs
# on a temporary copy of tests/fuzz/corpus/TARGET, so the repository's
# corpus is never modified. First, every reproducer in
# tests/fuzz/crashers/TARGET-* is replayed: a bug found earlier must stay
# fixed (FERRY_FUZZ_SKIP_CRASHERS=1 skips that). A crash is copied to
# BUILD_DIR/crashes/ and printed in base64.
# Exit 77 (ctest: skipped) when clang or the libFuzzer runtime is missing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${1:?usage: run.sh TARGET [SECONDS] [BUILD_DIR]}
target=${target#fuzz_}
seconds=${2:-${FERRY_FUZZ_SECONDS:-10}}
out=${3:-$root/build/fuzz}
mkdir -p "$out"

# Builds are serialised: ctest -j may start several targets at once.
if command -v flock >/dev/null 2>&1; then
    flock "$out/.lock" "$here/build.sh" "$out" "$target"
else
    "$here/build.sh" "$out" "$target"
fi
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "fuzz: building fuzz_$target failed" >&2; exit 1; }
bin="$out/fuzz_$target"

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
cp "$here/corpus/$target"/* "$work/corpus/" 2>/dev/null || true
dict=()
[ -f "$here/$target.dict" ] && dict=(-dict="$here/$target.dict")

if [ "${FERRY_FUZZ_SKIP_CRASHERS:-0}" != 1 ]; then
    for f in "$here/crashers/$target"-*; do
        [ -f "$f" ] || continue
        if ! "$bin" -runs=1 "$f" >"$work/replay.log" 2>&1; then
            echo "fuzz_$target: crashers/$(basename "$f") still fails:" >&2
            grep -a -m3 -E 'fuzz: property|ERROR: AddressSanitizer|runtime error' "$work/replay.log" >&2
            exit 1
        fi
    done
fi

"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" "$work/corpus" >"$work/log" 2>&1
rc=$?
runs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
cov=$(grep -a -o 'cov: [0-9]* ft: [0-9]*' "$work/log" | tail -1)
echo "fuzz_$target: ${runs:-?} executions in ${seconds}s, ${cov:-no coverage line}"
if [ $rc -ne 0 ]; then
    grep -a -v '^    #[0-9]' "$work/log" | grep -a -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)' | tail -40 >&2
    mkdir -p "$out/crashes"
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
        [ -f "$a" ] || continue
        cp "$a" "$out/crashes/$target-$(basename "$a")"
        echo "fuzz_$target: input saved as $out/crashes/$target-$(basename "$a"); base64:" >&2
        base64 -w0 "$a" >&2
        echo >&2
    done
    exit 1
fi
