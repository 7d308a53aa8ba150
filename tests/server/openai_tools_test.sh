#!/usr/bin/env bash
# Tool calls through the official `openai` npm package (openai_tools_test.mjs)
# for each tool-call format: a `tpinfer serve` per format, with a chat
# template that writes that format's calls: Mistral Nemo's own (from the
# shared templates), and for hermes and llama3_json the short ones of
# tool_templates/ (Qwen2.5's and Llama 3.1's own prompts with two tools do not
# fit the bible model's 512 tokens; tool_render_test renders those).
# The cases force calls, which the server does by constrained decoding;
# run by OpenAiClient.ToolCallsInEveryFormatWholeAndStreamed.
#
#   openai_tools_test.sh TPINFER_BINARY MODEL TEMPLATES_DIR
#
# Exit status: 0 passed; 77 skipped (node or npm missing, or the npm registry
# unreachable); anything else failed.
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 TPINFER_BINARY MODEL TEMPLATES_DIR" >&2
  exit 2
fi
bin=$(realpath "$1")
model=$(realpath "$2")
templates=$(realpath "$3")
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node or npm not found"
  exit 77
fi

work=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

npm init -y >/dev/null 2>&1
if ! npm install --no-audit --no-fund --loglevel=error openai >npm.log 2>&1; then
  cat npm.log
  echo "npm install openai failed (is the registry reachable?)"
  exit 77
fi
echo "openai $(node -p 'JSON.parse(require("fs").readFileSync("node_modules/openai/package.json")).version'), node $(node --version)"
cp "$here/openai_tools_test.mjs" client.mjs

for case in "hermes:$here/tool_templates/hermes.jinja" "llama3_json:$here/tool_templates/llama3_json.jinja" \
  "mistral:$templates/mistralai-Mistral-Nemo-Instruct-2407.jinja"; do
  format=${case%%:*}
  template=${case#*:}
  : >server.log
  "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --no-pin --api-key test-key --served-model-name bible \
    --chat-template "$template" >>server.log 2>&1 &
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
  if ! grep -q "tool calls $format" server.log; then
    cat server.log
    echo "the server did not detect $format from $template"
    exit 1
  fi
  if ! FORMAT=$format BASE_URL="http://127.0.0.1:$port/v1" node client.mjs; then
    cat server.log
    exit 1
  fi
  stop_server
done
echo "passed"
