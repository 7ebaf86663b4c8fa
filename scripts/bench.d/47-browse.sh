# Restore picker on a generated snapshot of 1,000,000 files in 1,000 folders (the bench writes
# its entries.jsonl.zst; BASTION_BENCH_BROWSE_FILES changes the count): today's streaming List,
# which decodes the whole entries index for every page, against the per-snapshot browse index,
# in the same run. Ops: a folder's first page, a name search in a folder, a second page, the first
# page after a restart (index on disk, new cache), the first page ever (download + index build).
# Figures: sec/op, p50-ms, p95-ms, peak-rss-MiB (peak resident memory above the start of each op).
BASTION_BENCH_BROWSE_FILES=${BASTION_BENCH_BROWSE_FILES:-1000000} BENCH_COUNT=${BENCH_COUNT:-1} \
  gobench engine ./operations/ 'BenchmarkBrowse' -benchtime "${BASTION_BENCH_BROWSE_TIME:-20s}" -timeout 60m
# The p95 of each op, index against streaming.
awk '/^BenchmarkBrowse\// {
    split($1, k, "/"); op = substr(k[2], 4); impl = k[3]; sub(/^impl=/, "", impl); sub(/-[0-9]+$/, "", impl)
    for (i = 3; i < NF; i++) if ($(i+1) == "p95-ms") p95[op, impl] = $i
    if (!(op in seen)) { seen[op] = 1; order[++n] = op }
  }
  END {
    printf "%-10s %16s %14s %12s\n", "op", "streaming p95", "index p95", "index/stream"
    for (i = 1; i <= n; i++) { o = order[i]
      printf "%-10s %13.1f ms %11.1f ms %12.4f\n", o, p95[o, "streaming"], p95[o, "index"], p95[o, "index"] / p95[o, "streaming"] }
  }' "$out/$(echo "engine-./operations/-BenchmarkBrowse" | tr -c 'A-Za-z0-9_-' '_').txt"
