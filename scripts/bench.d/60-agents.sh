# Agents (httpapi/agentsock), all in one run on this machine:
# - reconnect storm: 1,000 real WebSocket agents lose the Hub for 2.5 s. peak_attempts/100ms and
#   s_until_all_back for impl=nojitter (baseline), halfjitter (the original's [base/2, base]),
#   fulljitter and decorrelated (ours). Ratio: peak vs nojitter.
# - dead-peer detection of a black-holed link, as a ratio of the pong timeout (agent and Hub side).
# - Hub heap per connected idle agent with 1,000 agents (held by a child process), impl=hub vs
#   impl=bare (a WebSocket server that only holds the connections).
gobench httpapi ./agentsock/ 'BenchmarkReconnectStorm' -benchtime 1x -count 2 -timeout 30m
gobench httpapi ./agentsock/ 'BenchmarkDeadPeerDetection' -benchtime 2x -count 3
gobench httpapi ./agentsock/ 'BenchmarkIdleAgentMemory' -benchtime 1x -count 3
