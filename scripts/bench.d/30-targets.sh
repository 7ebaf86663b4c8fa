# Backup targets. localdir: copying a 64 MiB part through a user-space buffer (impl=reader) vs
# handing the *os.File to copy_file_range (impl=file); figures: MB/s and B/op, both with fsync.
gobench engine ./targets/localdir 'BenchmarkPutPart' -benchtime 20x
