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

# shellcheck source=openai_lib.sh
. "$here/openai_lib.sh"
work=$(mktemp -d)
server_pid=""
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
install_openai
cp "$here/openai_tools_test.mjs" client.mjs

for case in "hermes:$here/tool_templates/hermes.jinja" "llama3_json:$here/tool_templates/llama3_json.jinja" \
  "mistral:$templates/mistralai-Mistral-Nemo-Instruct-2407.jinja"; do
  format=${case%%:*}
  template=${case#*:}
  start_server --chat-template "$template"
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
