// Drive Portcullis with the official `openai` npm package, as a Node application would.
// Run by tests/openai_node.rs with PORTCULLIS_BASE_URL and PORTCULLIS_KEY set. Every check
// asserts; the last line printed is a JSON summary the Rust test reads.
import assert from "node:assert/strict";
import OpenAI from "openai";

const baseURL = process.env.PORTCULLIS_BASE_URL;
const apiKey = process.env.PORTCULLIS_KEY;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const summary = {};

// Non-streaming chat through the openai-kind provider (the in-process mock upstream).
const resp = await client.chat.completions.create({
  model: "mock-json",
  messages: [{ role: "user", content: "Say hello" }],
});
assert.equal(resp.choices[0].message.content, "Hello from the mock upstream.");
assert.equal(resp.usage.total_tokens, 11);
summary.chat = resp.choices[0].message.content;

// Streaming chat: all the text, in order, then the end of the stream.
let text = "";
for await (const chunk of await client.chat.completions.create({
  model: "mock-stream",
  messages: [{ role: "user", content: "Count" }],
  stream: true,
})) {
  text += chunk.choices[0]?.delta?.content ?? "";
}
assert.equal(text, Array.from({ length: 21 }, (_, i) => `tok${i} `).join(""));
summary.stream = "ok";

// Guardrails: PII in a streamed answer arrives redacted, even split across events.
text = "";
for await (const chunk of await client.chat.completions.create({
  model: "mock-scripted",
  messages: [{ role: "user", content: "contact?" }],
  stream: true,
  metadata: { answer: "Mail jane.doe@example.com today.", event_chars: "5" },
})) {
  text += chunk.choices[0]?.delta?.content ?? "";
}
assert.equal(text, "Mail [EMAIL] today.");

// A blocked prompt is a BadRequestError with our code, and the value is not echoed.
const secret = "AKIA2E0A8F3B244C9986";
await assert.rejects(
  client.chat.completions.create({
    model: "mock-json",
    messages: [{ role: "user", content: `deploy with ${secret}` }],
  }),
  (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal(e.code, "guardrail_blocked");
    assert.ok(!JSON.stringify(e.error).includes(secret));
    return true;
  },
);

// A blocked streamed answer throws in the middle of the iteration.
let seen = "";
await assert.rejects(
  (async () => {
    for await (const chunk of await client.chat.completions.create({
      model: "mock-scripted",
      messages: [{ role: "user", content: "key?" }],
      stream: true,
      metadata: { answer: `Use ${secret} to sign in.`, event_chars: "4" },
    })) {
      seen += chunk.choices[0]?.delta?.content ?? "";
    }
  })(),
  (e) => {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.match(String(e.message), /guardrail/);
    return true;
  },
);
assert.ok(!seen.includes("AKIA"));
summary.guardrails = "ok";

// Embeddings, model listing and typed errors with our codes.
// (The npm SDK asks for base64 by default; the mock upstream only speaks floats.)
const emb = await client.embeddings.create({ model: "mock-embed", input: "hi", encoding_format: "float" });
assert.deepEqual(emb.data[0].embedding, [0.1, 0.2, 0.3]);
const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes("demo"), models.join(","));
await assert.rejects(
  client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
  (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
);
await assert.rejects(
  client.chat.completions.create({ model: "mock-error", messages: [{ role: "user", content: "x" }] }),
  (e) => e instanceof OpenAI.RateLimitError && e.status === 429,
);
const bad = new OpenAI({ baseURL, apiKey: "pc_" + "A".repeat(43), maxRetries: 0 });
await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.code === "invalid_api_key");
summary.errors = "ok";

console.log(JSON.stringify(summary));
