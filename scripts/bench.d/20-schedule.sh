# Next cron trigger in America/New_York for */5, daily 03:00, 29 February and Sundays 02:30:
# gronx.NextTickAfter on the string each call (impl=gronx, the spec's baseline) vs robfig/cron/v3's
# parsed schedule (impl=robfig) vs engine/schedule's compiled Schedule.Next (impl=compiled).
gobench engine ./schedule/ 'BenchmarkNext'
