# HTTP: middleware overhead vs the bare router; memory while a 256 MiB asset streams (readall
# baseline vs ours); and requests/s for a hashed asset and for a 304 revalidation, the Hub beside
# nginx serving the same directory on this machine in the same run (wrk, 1 thread, 32 connections).
gobench httpapi ./middleware/ 'BenchmarkMiddleware'
gobench httpapi ./webui/ 'BenchmarkLargeFileMemory' -benchtime 3x

http_bench() {
  local tmp; tmp=$(mktemp -d)
  local ui="$tmp/ui"; mkdir -p "$ui/assets"
  cp "$root/httpapi/webui/testdata/dist/index.html" "$ui/"
  head -c 100000 /dev/urandom | base64 > "$ui/assets/app-5f3e2d1c.js"   # a ~130 KB hashed bundle
  go build -o "$tmp/bastion" "$root/hub/cmd/bastion"
  local hub_port nginx_port
  hub_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  nginx_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  BASTION_UI_DIR="$ui" BASTION_LOG=warn "$tmp/bastion" --data-dir "$tmp/data" --port "$hub_port" >"$tmp/hub.log" 2>&1 &
  local hub_pid=$!
  cat >"$tmp/nginx.conf" <<NGINX
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
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
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hub_port/api/health" >/dev/null && break; sleep 0.1; done
  local asset=/assets/app-5f3e2d1c.js
  declare -A rps
  for server in hub nginx; do
    local port=$hub_port; [ $server = nginx ] && port=$nginx_port
    local etag; etag=$(curl -sI "http://127.0.0.1:$port$asset" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
    rps[$server-200]=$(wrk -t1 -c32 -d8s "http://127.0.0.1:$port$asset" | awk '/Requests\/sec/{print $2}')
    rps[$server-304]=$(wrk -t1 -c32 -d8s -H "If-None-Match: $etag" "http://127.0.0.1:$port$asset" | awk '/Requests\/sec/{print $2}')
  done
  kill "$hub_pid"; nginx -c "$tmp/nginx.conf" -s stop; wait "$hub_pid" 2>/dev/null || true
  printf '%-28s %12s %12s %8s\n' "request" "hub req/s" "nginx req/s" "hub/nginx"
  for kind in 200 304; do
    printf '%-28s %12s %12s %8s\n' "hashed asset ($kind)" "${rps[hub-$kind]}" "${rps[nginx-$kind]}" \
      "$(python3 -c "print(f'{${rps[hub-$kind]}/${rps[nginx-$kind]}:.2f}')")"
  done
  rm -rf "$tmp"
}
http_bench
