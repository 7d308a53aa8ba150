#!/usr/bin/env bash
# The official `openai` npm package, unmodified, against `tpinfer serve`: a
# streamed chat completion, the same chat not streamed, a plain completion,
# the model list and an error. Installs the package into a temporary folder.
#
#   openai_client_test.sh TPINFER_BINARY MODEL
#
# Exit status: 0 passed; 77 skipped (node or npm missing, or the npm registry
# unreachable); anything else failed.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 TPINFER_BINARY MODEL" >&2
  exit 2
fi
bin=$(realpath "$1")
model=$(realpath "$2")
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node or npm not found"
  exit 77
fi

here=$(cd "$(dirname "$0")" && pwd)
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
start_server

cat >client.mjs <<'EOF'
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "test-key", maxRetries: 0 });
const messages = [
  { role: "system", content: "Speak as the King James Bible." },
  { role: "user", content: "Who created the heaven and the earth?" },
];

// A streamed chat completion, read as any application would.
const stream = await client.chat.completions.create({
  model: "bible", messages, stream: true, max_tokens: 16, temperature: 0,
  stream_options: { include_usage: true },
});
let text = "", chunks = 0, finish = null, role = null, usage = null;
for await (const chunk of stream) {
  chunks++;
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  const choice = chunk.choices[0];
  if (!choice) continue;
  if (choice.delta.role) role = choice.delta.role;
  if (choice.delta.content) text += choice.delta.content;
  if (choice.finish_reason) finish = choice.finish_reason;
}
assert.ok(chunks >= 3, `only ${chunks} chunks`);
assert.equal(role, "assistant");
assert.ok(finish === "length" || finish === "stop", `finish_reason ${finish}`);
assert.ok(text.length > 0);
assert.ok(usage && usage.completion_tokens > 0 && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);

// The same chat, not streamed: the same text.
const chat = await client.chat.completions.create({ model: "bible", messages, max_tokens: 16, temperature: 0 });
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(chat.choices[0].message.content, text);
assert.equal(chat.usage.completion_tokens, usage.completion_tokens);

// A plain completion.
const completion = await client.completions.create({
  model: "bible", prompt: "And Jesus said unto them,", max_tokens: 12, temperature: 0,
});
assert.equal(completion.object, "text_completion");
assert.ok(completion.choices[0].text.length > 0);
assert.equal(completion.usage.completion_tokens, 12);

// The model list, and an error as the client reports it.
const models = await client.models.list();
assert.deepEqual(models.data.map((m) => m.id), ["bible"]);
await assert.rejects(
  client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 1 }),
  (err) => err.status === 404 && err.code === "model_not_found",
);
const wrongKey = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "wrong", maxRetries: 0 });
await assert.rejects(wrongKey.models.list(), (err) => err.status === 401);

console.log(`streamed chat (${chunks} chunks): ${JSON.stringify(text)}`);
console.log(`completion: ${JSON.stringify(completion.choices[0].text)}`);
EOF

if ! BASE_URL="http://127.0.0.1:$port/v1" node client.mjs; then
  cat server.log
  exit 1
fi

# A graceful stop: SIGTERM, exit status 0.
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if [ "$status" -ne 0 ]; then
  cat server.log
  echo "the server exited with $status after SIGTERM"
  exit 1
fi
echo "passed"
