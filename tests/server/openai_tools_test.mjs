// Tool calls through the official `openai` npm package, for one tool-call
// format: run by openai_tools_test.sh with BASE_URL (a tpinfer server whose
// chat template writes FORMAT's calls) and FORMAT (hermes, llama3_json,
// mistral). The bible model never calls a tool by itself, so every case
// forces a call (tool_choice "required" or a named function), which the
// server does by constrained decoding.
//
// Cases: a named call, whole and streamed (the same call both ways, the
// stream in OpenAI's chunking: a call's first delta has its id, type and
// name, then its arguments come in pieces); "required" over two tools with
// parallel_tool_calls false (exactly one call); the call sent back with its
// result (the conversation renders through the template) and an answer.
import assert from "node:assert/strict";
import OpenAI from "openai";

const format = process.env.FORMAT;
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "test-key", maxRetries: 0 });
// Short, without descriptions: the bible model's context is 512 tokens; the
// city has a maxLength because the bible model, which has never seen a
// quotation mark, would not end a free string within it.
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 24 }, unit: { enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"],
      },
    },
  },
  { type: "function", function: { name: "get_time" } },
];
const messages = [{ role: "user", content: "Weather in Jerusalem?" }];
const named = { type: "function", function: { name: "get_weather" } };
const base = { model: "bible", messages, tools, temperature: 0, max_tokens: 160 };

function checkWeatherCall(call) {
  assert.equal(call.type, "function");
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  assert.equal(call.function.name, "get_weather");
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.city, "string");
  assert.ok(["celsius", "fahrenheit"].includes(args.unit), `unit ${args.unit}`);
  return args;
}

// A named call, not streamed.
const whole = await client.chat.completions.create({ ...base, tool_choice: named });
const wchoice = whole.choices[0];
assert.equal(wchoice.finish_reason, "tool_calls");
assert.ok(wchoice.message.content === null || typeof wchoice.message.content === "string");
assert.ok(wchoice.message.tool_calls.length >= 1);
const args = checkWeatherCall(wchoice.message.tool_calls[0]);

// The same, streamed: merged as the client merges deltas.
const stream = await client.chat.completions.create({ ...base, tool_choice: named, stream: true });
const calls = [];
let finish = null, content = "";
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  if (choice.delta.content) content += choice.delta.content;
  for (const t of choice.delta.tool_calls ?? []) {
    if (calls[t.index] === undefined) {
      assert.equal(t.index, calls.length, "calls start in order");
      assert.ok(t.id && t.type === "function" && t.function.name, `a call's first delta names it: ${JSON.stringify(t)}`);
      calls[t.index] = { id: t.id, type: t.type, function: { name: t.function.name, arguments: t.function.arguments ?? "" } };
    } else {
      assert.equal(t.id, undefined);
      calls[t.index].function.arguments += t.function.arguments ?? "";
    }
  }
  if (choice.finish_reason) finish = choice.finish_reason;
}
assert.equal(finish, "tool_calls");
assert.equal(calls.length, wchoice.message.tool_calls.length);
assert.deepEqual(checkWeatherCall(calls[0]), args, "greedy: the streamed call is the whole one");
assert.equal(content, wchoice.message.content ?? "");

// "required" over both tools, one call at most.
const required = await client.chat.completions.create({ ...base, tool_choice: "required", parallel_tool_calls: false });
assert.equal(required.choices[0].finish_reason, "tool_calls");
assert.equal(required.choices[0].message.tool_calls.length, 1);
assert.ok(["get_weather", "get_time"].includes(required.choices[0].message.tool_calls[0].function.name));

// The call and its result sent back: the template renders them, the model answers.
const call = wchoice.message.tool_calls[0];
const answer = await client.chat.completions.create({
  ...base,
  max_tokens: 8,
  tool_choice: "none",
  messages: [
    ...messages,
    { role: "assistant", content: null, tool_calls: [call] },
    { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21, unit: args.unit }) },
  ],
});
assert.equal(typeof answer.choices[0].message.content, "string");
assert.equal(answer.choices[0].message.tool_calls, undefined);

console.log(`${format}: ${call.function.name}(${call.function.arguments}); streamed ${calls.length} call(s)`);
