# HTTP: middleware overhead vs the bare router; memory while a 256 MiB asset streams (readall
# baseline vs ours); and requests/s for a 200 KB hashed asset (full, 304 revalidation, and
# precompressed gzip), the Hub beside nginx (1 worker, sendfile, etag, gzip_static) serving the
# same directory on this machine in the same run.
gobench httpapi ./middleware/ 'BenchmarkMiddleware'
gobench httpapi ./webui/ 'BenchmarkLargeFileMemory' -benchtime 3x
gobench httpapi ./webui/ 'BenchmarkServe'

# http_bench: wrk (1 thread, 32 connections, 4 s per run). The machine is shared, so each round
# measures the Hub and nginx back to back for every request kind; the ratio printed is the median
# of the rounds' ratios (BENCH_HTTP_ROUNDS, default 3), beside the median requests/s of each side.
# It also prints requests per CPU-second of each server process (utime+stime from /proc, nginx's
# master and worker together), which other load on the machine disturbs far less than requests/s.
# cpu_ticks PID...: user+system clock ticks the processes used so far.
cpu_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

http_bench() {
  local tmp; tmp=$(mktemp -d)
  chmod 755 "$tmp" # nginx's workers run unprivileged: a 0700 directory would have them answer 403
  local ui="$tmp/ui"; mkdir -p "$ui/assets"
  cp "$root/httpapi/webui/testdata/dist/index.html" "$ui/"
  local asset=/assets/app-5f3e2d1c.js
  # ~200 KB of script-like text (it compresses like a real bundle, unlike random bytes).
  python3 - "$ui$asset" <<'PY'
import random, sys
rnd = random.Random(12)
words = ["const", "return", "function", "this", "props", "value", "render", "await", "=>", "null",
         "undefined", "export", "import", "from", "if", "else", "length", "push", "map", "filter"]
out = []
size = 0
while size < 200_000:
    line = "function f%d(a,b){%s}\n" % (rnd.randrange(1 << 20), " ".join(rnd.choice(words) for _ in range(rnd.randrange(4, 16))))
    out.append(line)
    size += len(line)
open(sys.argv[1], "w").write("".join(out)[:200_000])
PY
  # The UI build's precompression step writes these siblings (ui/vite.config.ts); nginx's
  # gzip_static serves the same .gz.
  gzip -9 -k "$ui$asset"
  node -e 'const z=require("node:zlib"),fs=require("node:fs");const f=process.argv[1];
    fs.writeFileSync(f+".br",z.brotliCompressSync(fs.readFileSync(f),{params:{[z.constants.BROTLI_PARAM_QUALITY]:11}}))' "$ui$asset" ||
    echo "http_bench: node not found, no .br sibling" >&2
  go build -o "$tmp/bastion" "$root/hub/cmd/bastion"
  local hub_port nginx_port
  hub_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  nginx_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  BASTION_UI_DIR="$ui" BASTION_LOG=warn "$tmp/bastion" --data-dir "$tmp/data" --port "$hub_port" >"$tmp/hub.log" 2>&1 &
  local hub_pid=$!
  cat >"$tmp/nginx.conf" <<NGINX
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  etag on;
  gzip_static on;
  gzip_vary on;
  client_body_temp_path $tmp/nginx-body; proxy_temp_path $tmp/nginx-proxy; fastcgi_temp_path $tmp/nginx-fcgi;
  uwsgi_temp_path $tmp/nginx-uwsgi; scgi_temp_path $tmp/nginx-scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    root $ui;
    location /assets/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location / { add_header Cache-Control "no-cache"; try_files \$uri /index.html; }
  }
}
NGINX
  nginx -c "$tmp/nginx.conf"
  local nginx_pids; nginx_pids="$(cat "$tmp/nginx.pid") $(ps --ppid "$(cat "$tmp/nginx.pid")" -o pid= | tr -d ' ')"
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hub_port/api/health" >/dev/null && break; sleep 0.1; done

  local kinds=(full 304 gzip)
  declare -A etag
  for server in hub nginx; do
    local port=$hub_port; [ $server = nginx ] && port=$nginx_port
    curl -sf -o /dev/null "http://127.0.0.1:$port$asset" || echo "http_bench: $server cannot serve $asset" >&2
    etag[$server]=$(curl -sI "http://127.0.0.1:$port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
    local enc; enc=$(curl -sI -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
    [ "$enc" = gzip ] || echo "http_bench: $server does not serve the gzip sibling (Content-Encoding '$enc')" >&2
  done
  local results="$out/http-wrk.txt"; : >"$results"
  for round in $(seq "${BENCH_HTTP_ROUNDS:-3}"); do
    for kind in "${kinds[@]}"; do
      for server in hub nginx; do
        local port=$hub_port; [ $server = nginx ] && port=$nginx_port
        local hdr=()
        case $kind in
          304) hdr=(-H "If-None-Match: ${etag[$server]}") ;;
          gzip) hdr=(-H "Accept-Encoding: gzip") ;;
        esac
        local pids=$hub_pid; [ $server = nginx ] && pids=$nginx_pids
        local t0; t0=$(cpu_ticks $pids)
        local res; res=$(wrk -t1 -c32 -d4s "${hdr[@]}" "http://127.0.0.1:$port$asset")
        local t1; t1=$(cpu_ticks $pids)
        if grep -q 'Non-2xx' <<<"$res"; then
          echo "http_bench: $server answered errors for $kind:" >&2; echo "$res" >&2
        fi
        echo "$round $kind $server $(awk '/Requests\/sec/{print $2}' <<<"$res") $(awk '/requests in/{print $1}' <<<"$res") $((t1 - t0))" >>"$results"
      done
    done
  done
  kill "$hub_pid"; nginx -c "$tmp/nginx.conf" -s stop; wait "$hub_pid" 2>/dev/null || true
  python3 - "$results" <<'PY'
import os, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rps = {}
ticks = os.sysconf("SC_CLK_TCK")
for rnd, kind, server, v, n, cpu in rows:
    # requests/s, and requests per CPU-second of the server
    rps.setdefault(kind, {}).setdefault(rnd, {})[server] = (float(v), int(n) * ticks / max(1, int(cpu)))
label = {"full": "200 KB asset (200)", "304": "304 revalidation", "gzip": "gzip (vs gzip_static)"}
for i, what in [(0, "req/s"), (1, "req/cpu-s")]:
    print(f"{'request':<26} {'hub ' + what:>14} {'nginx ' + what:>16} {'hub/nginx':>10}  rounds")
    for kind in ["full", "304", "gzip"]:
        rs = rps.get(kind, {})
        hub = statistics.median(r["hub"][i] for r in rs.values())
        ngx = statistics.median(r["nginx"][i] for r in rs.values())
        ratios = [r["hub"][i] / r["nginx"][i] for r in rs.values()]
        print(f"{label[kind]:<26} {hub:>14.0f} {ngx:>16.0f} {statistics.median(ratios):>10.2f}  "
              + " ".join(f"{x:.2f}" for x in ratios))
PY
  rm -rf "$tmp"
}
http_bench
