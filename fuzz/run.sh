#!/bin/sh
# Runs libFuzzer targets over their in-tree seed corpus for a while each and
# prints one summary line per target. Used by `make fuzz` (long runs) and by
# the fuzz.* ctest entries (a few seconds each, so a parser regression fails
# `make test`).
#
#   fuzz/run.sh BIN_DIR SECONDS [TARGET...]     (default: every fuzz_* in BIN_DIR)
#
# The corpus directory fuzz/corpus/TARGET is only read: inputs libFuzzer finds
# go to a temporary directory that is removed afterwards, crashes to
# $FUZZ_ARTIFACTS (default BIN_DIR/../fuzz-artifacts). A missing binary is a
# failure, not a skip. Exit status: 0 if every target ran clean.
set -u

if [ $# -lt 2 ]; then
  echo "usage: $0 BIN_DIR SECONDS [TARGET...]" >&2
  exit 2
fi
bin_dir=$1
secs=$2
shift 2
src_dir=$(cd "$(dirname "$0")" && pwd)
artifacts=${FUZZ_ARTIFACTS:-$bin_dir/../fuzz-artifacts}

if [ $# -eq 0 ]; then
  for src in "$src_dir"/fuzz_*.c; do
    set -- "$@" "$(basename "$src" .c)"
  done
fi

# Largest input per target: big enough for the formats (a 4 KiB index
# header plus entries, a tar stream of a few files), small enough that every
# input runs fast.
max_len() {
  case $1 in
    fuzz_client_archive) echo 65536 ;;
    fuzz_index) echo 16384 ;;
    fuzz_blob|fuzz_manifest|fuzz_s3_xml|fuzz_json) echo 32768 ;;
    *) echo 4096 ;;
  esac
}

failed=0
for t in "$@"; do
  exe=$bin_dir/$t
  corpus=$src_dir/corpus/$t
  if [ ! -x "$exe" ]; then
    printf '%-22s MISSING (%s not built: make fuzz-build)\n' "$t" "$exe"
    failed=1
    continue
  fi
  if [ ! -d "$corpus" ]; then
    printf '%-22s NO CORPUS (%s)\n' "$t" "$corpus"
    failed=1
    continue
  fi
  mkdir -p "$artifacts" && artifacts=$(cd "$artifacts" && pwd) || exit 1
  work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fuzz-$t-XXXXXX")
  log=$work.log
  "$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    -artifact_prefix="$artifacts/$t-" -print_final_stats=1 "$work" "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  found=$(find "$work" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    printf '%-22s ok      %8s runs, %s seeds, %s new inputs\n' "$t" "${runs:-?}" \
      "$(find "$corpus" -type f | wc -l)" "$found"
  else
    printf '%-22s FAILED  (exit %s); the input is in %s/%s-*; log:\n' "$t" "$rc" \
      "$artifacts" "$t"
    # The report, without libFuzzer's and libc's own frames.
    grep -E 'ERROR|property failed|SUMMARY|^    #[0-9]' "$log" |
      grep -v -E ' in (fuzzer::|__sanitizer|__libc|_start|main |raise|abort|__pthread)' |
      head -30 | sed 's/^/    /'
    failed=1
  fi
  rm -rf "$work" "$log"
done
exit $failed
