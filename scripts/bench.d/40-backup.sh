# Backup and restore throughput and peak RSS on a generated 1 GiB tree (half random, half text),
# Bastion beside tar | zstd -3 -T0 | age with Debian's tools, with and without encryption. Every
# run is its own process under GNU time, so each peak-rss-MiB is that run's own.
BASTION_BENCH_TREE_MIB=${BASTION_BENCH_TREE_MIB:-1024} BENCH_COUNT=${BENCH_COUNT:-1} \
  gobench engine ./backup/ 'BackupRestore' -benchtime 1x -timeout 60m
# Many small files (100,000 of 100 B..4 KiB; BASTION_BENCH_SMALL_FILES=1000000 for the 1M case):
# Bastion with pre_scan on, as jobs have it, beside tar | zstd -3 -T0.
BASTION_BENCH_SMALL_FILES=${BASTION_BENCH_SMALL_FILES:-100000} BENCH_COUNT=${BENCH_COUNT:-3} \
  gobench engine ./backup/ 'SmallFiles' -benchtime 1x -timeout 60m
# The pre-scan of the same 100,000 files on preScanWalkers goroutines beside one (as it was).
BASTION_BENCH_SMALL_FILES=${BASTION_BENCH_SMALL_FILES:-100000} BENCH_COUNT=${BENCH_COUNT:-6} \
  gobench engine ./backup/ 'PreScan'
