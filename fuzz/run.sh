#!/usr/bin/env bash
# Fuzzes one target, or all of them one after the other, for a given time:
#
#   fuzz/run.sh TARGET SECONDS
#   fuzz/run.sh all SECONDS
#
# The engine is cargo-fuzz (libFuzzer with AddressSanitizer, nightly) when `cargo +nightly fuzz`
# works, and otherwise the stable driver (src/bin/stable_fuzz.rs: seeded random mutations of the
# seeds, no coverage feedback). FUZZ_ENGINE picks one explicitly:
#
#   FUZZ_ENGINE=cargo-fuzz   cargo +nightly fuzz run (needs nightly and cargo-fuzz)
#   FUZZ_ENGINE=libfuzzer    libFuzzer with coverage on the stable toolchain: the targets built
#                            with the sanitizer-coverage flags cargo-fuzz uses, minus the
#                            sanitizer (needs a C++ compiler for libFuzzer itself)
#   FUZZ_ENGINE=stable       the stable driver
#
# Inputs come from fuzz/seeds/TARGET/ and the working corpus fuzz/corpus/TARGET/ (ignored by
# git; new inputs go there); crashing inputs are saved in fuzz/artifacts/TARGET/, which
# `cargo test` replays. Exits non-zero if any target crashed.
set -euo pipefail

usage() {
    echo "usage: fuzz/run.sh TARGET|all SECONDS   (FUZZ_ENGINE=cargo-fuzz|libfuzzer|stable)" >&2
    exit 2
}
[ $# -eq 2 ] || usage
target=$1
seconds=$2
case $seconds in '' | *[!0-9]*) usage ;; esac

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
cd "$root"
manifest=fuzz/Cargo.toml
target_dir=${CARGO_TARGET_DIR:-$fuzz_dir/target}

engine=${FUZZ_ENGINE:-}
if [ -z "$engine" ]; then
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        engine=cargo-fuzz
    else
        engine=stable
    fi
fi

# Every target, as the crate's binaries name them (less the stable driver itself).
all_targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | grep -v -e '^cardlog-fuzz$' -e '^stable_fuzz$'
}

if [ "$target" = all ]; then
    targets=$(all_targets)
else
    all_targets | grep -qx "$target" || {
        echo "unknown target $target; targets: $(all_targets | tr '\n' ' ')" >&2
        exit 2
    }
    targets=$target
fi

# The flags cargo-fuzz builds targets with (`cargo fuzz build --sanitizer none`).
sancov_flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
host=$(rustc -vV | sed -n 's/^host: //p')

echo "fuzz/run.sh: engine $engine, ${seconds}s per target"
status=0
case $engine in
cargo-fuzz)
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t"
        cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
            -max_total_time="$seconds" || status=1
    done
    ;;
libfuzzer)
    # Build all targets at once; the host triple keeps these flags off build scripts.
    bins=()
    for t in $targets; do bins+=(--bin "$t"); done
    RUSTFLAGS="$sancov_flags" cargo build --release --manifest-path "$manifest" \
        --target "$host" --target-dir "$target_dir" "${bins[@]}"
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
        "$target_dir/$host/release/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
            -max_total_time="$seconds" -artifact_prefix="fuzz/artifacts/$t/" || status=1
    done
    ;;
stable)
    cargo build --release --manifest-path "$manifest" --target-dir "$target_dir" \
        --bin stable_fuzz
    for t in $targets; do
        "$target_dir/release/stable_fuzz" "$t" "$seconds" || status=1
    done
    ;;
*) usage ;;
esac
exit $status
