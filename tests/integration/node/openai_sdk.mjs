// Drives an infera server with the official `openai` npm package: one normal and
// one streamed chat completion. Usage: node openai_sdk.mjs BASE_URL MODEL
// Prints one JSON line with what it saw; exits non-zero on any failure.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });

const messages = [{ role: "user", content: "Once upon a time" }];
const completion = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
const text = completion.choices[0].message.content;
if (typeof text !== "string") throw new Error("no message content");
if (completion.usage.completion_tokens < 1) throw new Error("usage.completion_tokens missing");

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let chunks = 0;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  const choice = chunk.choices[0];
  if (!choice) continue;
  streamed += choice.delta?.content ?? "";
  if (choice.finish_reason) finish = choice.finish_reason;
}
console.log(JSON.stringify({ text, streamed, chunks, finish, usage, id: completion.id }));
if (streamed !== text) throw new Error(`streamed text differs: ${JSON.stringify(streamed)} vs ${JSON.stringify(text)}`);
