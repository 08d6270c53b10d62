#!/bin/sh
# Build the libFuzzer target (clang, ASan + UBSan) and fuzz the decoder.
#   tfdc/native/fuzz/run_fuzz.sh [RUNS] [BUILD_DIR] [extra libFuzzer flags...]
# Seeds: fuzz/corpus (real packed files, written by `tfdc_test_decode
# --write`). New inputs go to BUILD_DIR/corpus so the committed seeds stay
# small. Exits non-zero on any crash, leak or timeout.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-10000000}
BUILD=${2:-"$HERE/../../../build/fuzz"}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
CC=clang cmake -S "$HERE/.." -B "$BUILD" -DTFDC_FUZZ=ON -DTFDC_BUILD_TESTS=OFF \
  -DTFDC_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target fuzz_decode >/dev/null
mkdir -p "$BUILD/corpus"
# Not `exec`: Linux keeps a process's peak RSS (getrusage's ru_maxrss, which
# libFuzzer's -rss_limit_mb reads) across execve, and this shell inherited
# its caller's at fork — a 2 GB pytest process made every run an "OOM". A
# child forked from this small shell starts from the shell's peak instead.
"$BUILD/fuzz_decode" -runs="$RUNS" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -dict="$HERE/tfdc.dict" -print_final_stats=1 "$@" "$BUILD/corpus" "$HERE/corpus"
