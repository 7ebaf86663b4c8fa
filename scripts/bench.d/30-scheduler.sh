# Scheduler and run queue (runtime.md §1-2). Figures, each beside its baseline in the same run:
#   IdleMinute       wakeups/min with 10,000 cron jobs none due in the minute (fake clock),
#                    impl=scheduler vs a 1 s impl=poller; ns/op is the CPU of that minute.
#   TriggerLateness  p50-ms / p99-ms from trigger to committed run, 1,000 jobs due in the same
#                    minute, real clock and SQLite, impl=scheduler vs impl=poller.
#   EventAppend      events/s with 100 runs appending at once, impl=group (group commit) vs
#                    impl=percommit (one transaction per event).
gobench engine ./scheduler 'BenchmarkIdleMinute' -benchtime 10x
gobench engine ./scheduler 'BenchmarkTriggerLateness' -benchtime 3x
gobench engine ./runs 'BenchmarkEventAppend' -benchtime 20000x
