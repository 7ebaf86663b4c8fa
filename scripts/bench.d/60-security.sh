# X-Forwarded-For parsing (per request behind a proxy): the previous parse-everything-then-walk
# (impl=chain) vs the right-to-left walk that stops at the client (impl=walk); in=padded is a
# client stuffing the header with 200 spoofed entries.
gobench httpapi ./middleware 'BenchmarkParseForwardedFor' -benchtime 20000x
