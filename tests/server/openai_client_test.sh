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
bin=$1
model=$2
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node or npm not found"
  exit 77
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
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

# The log exists before the server starts: the background job opens it only
# after the fork, and the loop below may read it first.
: >server.log
"$bin" serve -m "$model" --host 127.0.0.1 --port 0 --no-pin --api-key test-key --served-model-name bible \
  >>server.log 2>&1 &
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
