#!/usr/bin/env bash
# run.sh: build and run the GGUF reader fuzzer (libFuzzer, ASan+UBSan), one process.
#   fuzz/run.sh [SECONDS]   (default 600)
# Works in fuzz/corpus-work/ (git-ignored), seeded from fuzz/corpus/ (made by make_corpus.py); crash
# inputs land in build/fuzz/artifacts/, the log in build/fuzz/fuzz.log.
# Each crash found becomes a regression input in tests/fixtures/gguf_crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
make -s fuzz
python3 fuzz/make_corpus.py  # the seed corpus, written into fuzz/corpus/ (git-ignored)
mkdir -p fuzz/corpus-work build/fuzz/artifacts
cp -n fuzz/corpus/* fuzz/corpus-work/ 2>/dev/null || true
build/fuzz/fuzz_gguf -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=build/fuzz/artifacts/ -print_final_stats=1 \
    fuzz/corpus-work fuzz/corpus 2>&1 | tee build/fuzz/fuzz.log | grep -E '^#[0-9]+ *(pulse|DONE)|ERROR|SUMMARY|stat::' || true
echo "artifacts: $(ls build/fuzz/artifacts | wc -l) (build/fuzz/artifacts/)"
