# SQLite under contention: 64 writers + 16 readers, driver defaults vs busy timeout vs storage.Open.
# Figures: lock_errors (want 0 for impl=tuned) and committed_writes/s (ratio vs impl=default).
gobench storage . 'BenchmarkContention' -benchtime 3000x
