# Notifications (engine/notify), each sleeping worker against the original's 1-second poller
# (implemented in the benchmark file) in the same run:
#   latency     enqueue-to-delivery p50-ms / p99-ms to a local receiver, enqueues at arbitrary phases
#   idle        wakeups/idle-hour with an empty queue (fake clock): 0 for the worker, 3600 for the poller
#   drain       msgs/s draining a 10,000-message backlog over 50 destinations on one local receiver
gobench engine ./notify 'BenchmarkNotifyLatency' -benchtime 25x
gobench engine ./notify 'BenchmarkNotifyIdleWakeups' -benchtime 1x
NOTIFY_BENCH_BACKLOG=10000 gobench engine ./notify 'BenchmarkNotifyDrain' -benchtime 1x
