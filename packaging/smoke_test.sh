#!/usr/bin/env bash
# Smoke test of the frozen desktop package (run by `make package`; not in the test suite).
#
#   packaging/smoke_test.sh dist/farmseg-<version>-linux-x86_64.tar.gz <version>
#
# Unpacks the archive into a temporary folder and runs the frozen executable there with a
# bare environment (no venv, no PYTHONPATH, no display; temporary HOME), so it can use only
# what the archive holds:
#   1. `farmseg --version` prints the package version (cold start timed: the unpacked files
#      are evicted from the page cache first);
#   2. `farmseg segment` of the bundled sample scene to GeoJSON picks ONNX Runtime (no torch
#      in the package) and writes fields; `farmseg evaluate` scores them (field F1);
#      `--engine torch` is refused with a clear message;
#   3. bare `farmseg` opens the window offscreen, stays up, and quits on SIGTERM;
#   4. `farmseg gui --segment sample.tif` opens the window, segments in its job process (the
#      application run again with --job-process) and logs the result; window start time is timed.
# Prints a summary; exits non-zero on the first failure.
set -euo pipefail

ARCHIVE=${1:?usage: smoke_test.sh ARCHIVE VERSION}
VERSION=${2:?usage: smoke_test.sh ARCHIVE VERSION}
GUI_WAIT=${SMOKE_GUI_WAIT:-20}        # seconds the bare window must stay up
SEGMENT_WAIT=${SMOKE_SEGMENT_WAIT:-300}  # seconds allowed for the GUI's segmentation

TMP=$(mktemp -d "${TMPDIR:-/tmp}/farmseg-smoke.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "smoke test: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

tar xzf "$ARCHIVE" -C "$TMP"
APP="$TMP/farmseg"
EXE="$APP/farmseg"
SAMPLE="$APP/_internal/resources/sample/sample.tif"
REFERENCE="$APP/_internal/resources/sample/sample_fields_reference.geojson"
[ -x "$EXE" ] || fail "no executable $EXE in the archive"
[ -f "$SAMPLE" ] || fail "the sample scene is not in the archive"
for f in farmseg.json model.safetensors model.onnx; do
    [ -f "$APP/_internal/models/default/$f" ] || fail "models/default/$f is not in the archive"
done
[ -d "$APP/LICENSES" ] || fail "no LICENSES/ in the archive"
if find "$APP/_internal" -maxdepth 1 -name 'torch*' | grep -q .; then
    fail "torch is in the package"
fi

mkdir -p "$TMP/home" "$TMP/data" "$TMP/config" "$TMP/cache" "$TMP/run" "$TMP/work"
chmod 700 "$TMP/run"
cd "$TMP/work"
# the frozen app alone: a bare environment ("${RUN[@]}" CMD, so that `&` gives CMD's pid)
RUN=(env -i HOME="$TMP/home" PATH=/usr/bin:/bin LANG=C.UTF-8
     XDG_DATA_HOME="$TMP/data" XDG_CONFIG_HOME="$TMP/config" XDG_CACHE_HOME="$TMP/cache"
     XDG_RUNTIME_DIR="$TMP/run" QT_QPA_PLATFORM=offscreen)
evict() {  # drop the unpacked files from the page cache (this folder only) for a cold start
    python3 - "$APP" <<'EOF' || true
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(root, name)
        if os.path.islink(path):
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
EOF
}

# 1. version, cold and warm
evict
t=$(now)
out=$("${RUN[@]}" "$EXE" --version) || fail "--version exited $?"
COLD=$(since "$t")
[ "$out" = "farmseg $VERSION" ] || fail "--version printed '$out', expected 'farmseg $VERSION'"
t=$(now)
"${RUN[@]}" "$EXE" --version >/dev/null
WARM=$(since "$t")
echo "smoke: --version -> $out (cold ${COLD} s, warm ${WARM} s)"

# 2. CLI: segment the sample scene, score it, refuse torch
t=$(now)
"${RUN[@]}" "$EXE" segment "$SAMPLE" -o "$TMP/work/out.geojson" --engine auto \
    > segment.log 2>&1 || { cat segment.log; fail "segment exited non-zero"; }
SEGMENT_TIME=$(since "$t")
grep -q "onnx" segment.log || { cat segment.log; fail "segment did not run on ONNX Runtime"; }
SEGMENT_LINE=$(grep -m1 " fields, " segment.log || true)
FEATURES=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["features"]))' \
    "$TMP/work/out.geojson") || fail "out.geojson is not GeoJSON"
[ "$FEATURES" -gt 0 ] || fail "out.geojson has no features"
echo "smoke: segment -> $FEATURES fields in out.geojson in ${SEGMENT_TIME} s wall ($SEGMENT_LINE)"
"${RUN[@]}" "$EXE" evaluate --pred "$TMP/work/out.geojson" --ref "$REFERENCE" --image "$SAMPLE" \
    > evaluate.log 2>&1 || { cat evaluate.log; fail "evaluate exited non-zero"; }
F1_LINE=$(grep -m1 -i "field F1" evaluate.log || true)
[ -n "$F1_LINE" ] || { cat evaluate.log; fail "evaluate printed no field F1"; }
echo "smoke: evaluate -> $F1_LINE"
set +e
"${RUN[@]}" "$EXE" segment "$SAMPLE" -o "$TMP/work/torch.geojson" --engine torch -q > torch.log 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "PyTorch" torch.log \
    || { cat torch.log; fail "--engine torch: expected exit 2 naming PyTorch, got $rc"; }
echo "smoke: --engine torch -> refused: $(grep -m1 PyTorch torch.log | sed 's/^ *//')"

# 3. bare `farmseg` opens the window offscreen; SIGTERM closes it
"${RUN[@]}" "$EXE" > gui.log 2>&1 &
pid=$!
PIDS+=("$pid")
sleep "$GUI_WAIT"
kill -0 "$pid" 2>/dev/null || { cat gui.log; fail "the window closed by itself within $GUI_WAIT s"; }
kill -TERM "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"; cat gui.log; fail "the window did not quit within 15 s of SIGTERM"
fi
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 0 ] || { cat gui.log; fail "the window exited $rc on SIGTERM"; }
grep -q "Traceback" gui.log && { cat gui.log; fail "the window printed a traceback"; }
echo "smoke: window (bare farmseg, offscreen) up for $GUI_WAIT s, quit on SIGTERM (exit 0)"

# 4. the window segments the sample in its job process (the app run with --job-process)
LOG="$TMP/data/farmseg/farmseg/farmseg.log"
rm -f "$LOG"
evict
t=$(now)
"${RUN[@]}" "$EXE" gui --segment "$SAMPLE" > gui2.log 2>&1 &
pid=$!
PIDS+=("$pid")
OPENED="" SEGMENTED=""
for _ in $(seq $((SEGMENT_WAIT * 10))); do
    kill -0 "$pid" 2>/dev/null || { cat gui2.log; cat "$LOG" 2>/dev/null; fail "the window quit"; }
    if [ -z "$OPENED" ] && grep -q " opened " "$LOG" 2>/dev/null; then OPENED=$(since "$t"); fi
    if grep -q " ERROR " "$LOG" 2>/dev/null; then cat "$LOG"; fail "the window logged an error"; fi
    if grep -q " segmented " "$LOG" 2>/dev/null; then SEGMENTED=$(since "$t"); break; fi
    sleep 0.1
done
[ -n "$SEGMENTED" ] || { cat gui2.log; cat "$LOG" 2>/dev/null; fail "no segmentation in $SEGMENT_WAIT s"; }
kill -TERM "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "the window did not quit on SIGTERM"; }
set +e; wait "$pid"; rc=$?; set -e
[ "$rc" -eq 0 ] || { cat gui2.log; fail "the window exited $rc on SIGTERM"; }
echo "smoke: window start (cold, to the sample opened) ${OPENED:-?} s; GUI segmentation done at ${SEGMENTED} s"
echo "smoke: $(grep -m1 ' segmented ' "$LOG" | sed 's/^.* segmented /segmented /')"

echo "smoke test: PASSED"
