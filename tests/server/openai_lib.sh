# Shared by the openai npm client tests (openai_client_test.sh,
# openai_tools_test.sh); sourced, with `bin` (the tpinfer binary) and `model`
# set and the current folder a scratch folder.
#
#   install_openai            npm-installs the `openai` package here (exit 77
#                             when the registry cannot be reached)
#   start_server [ARGS...]    `tpinfer serve` on 127.0.0.1, any free port, key
#                             test-key, model name bible, with ARGS; sets
#                             server_pid and port, logs to server.log
#   stop_server               kills the server started last

install_openai() {
  npm init -y >/dev/null 2>&1
  if ! npm install --no-audit --no-fund --loglevel=error openai >npm.log 2>&1; then
    cat npm.log
    echo "npm install openai failed (is the registry reachable?)"
    exit 77
  fi
  echo "openai $(node -p 'JSON.parse(require("fs").readFileSync("node_modules/openai/package.json")).version'), node $(node --version)"
}

start_server() {
  # The log exists before the server starts: the background job opens it only
  # after the fork, and the loop below may read it first.
  : >server.log
  "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --no-pin --api-key test-key --served-model-name bible \
    "$@" >>server.log 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 1 1200); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' server.log || true)
    if [ -n "$port" ]; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat server.log
      echo "the server exited early"
      exit 1
    fi
    sleep 0.1
  done
  if [ -z "$port" ]; then
    cat server.log
    echo "the server did not start"
    exit 1
  fi
}

stop_server() {
  if [ -n "${server_pid:-}" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
