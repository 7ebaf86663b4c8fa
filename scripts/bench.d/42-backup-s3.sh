# Backup to S3 against a local directory: the same generated tree (256 MiB by default) backed up
# in 8 MiB parts to a local versitygw (posix backend, same disk) and to a local_dir, in turns.
# Figures: local-MB/s, s3-MB/s and s3/local (the S3 backup's time over the local one's).
BASTION_BENCH_TREE_MIB=${BASTION_BENCH_TREE_MIB:-256} BENCH_COUNT=${BENCH_COUNT:-1} \
  gobench engine ./backup/ 'BenchmarkBackupS3VsLocal' -benchtime 3x -timeout 30m
