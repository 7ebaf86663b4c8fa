# Restore from a local_dir target: the previous staged path (each part copied to staging) against
# parts verified and decoded in place, each with a synchronous and a pipelined zstd decoder, with
# and without age, on the same generated tree (1 GiB by default). Figures: MB/s, cpu-ms/op.
BASTION_BENCH_TREE_MIB=${BASTION_BENCH_TREE_MIB:-1024} BENCH_COUNT=${BENCH_COUNT:-1} \
  gobench engine ./restore/ 'BenchmarkRestoreLocal' -benchtime 1x -timeout 60m
