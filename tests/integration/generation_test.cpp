// The generation API of a real `infera serve --model` over real HTTP, on the
// small trained model from ../shared/models (skipped when it is absent).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <future>
#include <regex>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kModel = std::string(INFERA_SHARED_MODELS) + "/stories260K.gguf";

#define REQUIRE_MODEL()                                                                   \
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no shared model at " << kModel \
                                                     << " (../shared/models is absent)"

json chat_body(const std::string& content, int max_tokens, bool stream = false) {
  return {{"model", "stories260K"},
          {"messages", {{{"role", "user"}, {"content", content}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

std::optional<HttpResponse> post(int port, const std::string& path, const json& body) {
  return http_request(port, "POST", path, body.dump(), {{"Content-Type", "application/json"}});
}

// Parses an SSE body into its data payloads.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

double metric_value(int port, const std::string& series) {
  auto r = http_request(port, "GET", "/metrics");
  if (!r) return -1;
  std::regex re("\n" + std::regex_replace(series, std::regex(R"([{}\[\]().*+?^$|\\])"), R"(\$&)") +
                " ([0-9.eE+-]+)");
  std::smatch m;
  if (!std::regex_search(r->body, m, re)) return -1;
  return std::stod(m[1]);
}

class Generation : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_MODEL();
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--model", kModel, "--max-workers", "2", "--max-seqs", "8", "--ctx-size", "8192"});
    ASSERT_GT(server_->port(), 0);
    // Models load on first use; the metrics tests read the engine's gauges from the start.
    auto loaded = http_request(port(), "POST", "/api/models/stories260K/load");
    ASSERT_TRUE(loaded);
    ASSERT_EQ(loaded->status, 200) << loaded->body;
  }
  int port() const { return server_->port(); }
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(Generation, ChatCompletionHasOpenAiShape) {
  auto r = post(port(), "/v1/chat/completions", chat_body("Once upon a time", 12));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto doc = json::parse(r->body);
  EXPECT_EQ(doc["object"], "chat.completion");
  EXPECT_EQ(doc["model"], "stories260K");
  EXPECT_EQ(doc["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(doc["choices"][0]["message"]["content"].is_string());
  EXPECT_FALSE(doc["choices"][0]["message"]["content"].get<std::string>().empty());
  std::string finish = doc["choices"][0]["finish_reason"];
  EXPECT_TRUE(finish == "length" || finish == "stop") << finish;
  EXPECT_GT(doc["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(doc["usage"]["completion_tokens"].get<int>(), 12);
  EXPECT_EQ(doc["usage"]["total_tokens"].get<int>(),
            doc["usage"]["prompt_tokens"].get<int>() + doc["usage"]["completion_tokens"].get<int>());

  auto models = http_request(port(), "GET", "/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "stories260K");
}

TEST_F(Generation, StreamedChunksAddUpToTheSameText) {
  auto whole = post(port(), "/v1/chat/completions", chat_body("The little dog", 16));
  ASSERT_TRUE(whole);
  std::string text = json::parse(whole->body)["choices"][0]["message"]["content"];

  json body = chat_body("The little dog", 16, true);
  body["stream_options"] = {{"include_usage", true}};
  auto streamed = post(port(), "/v1/chat/completions", body);
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200);
  EXPECT_EQ(streamed->header("content-type"), "text/event-stream");
  auto events = sse_events(streamed->body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string joined;
  std::string finish;
  bool usage = false;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    auto chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk.contains("usage")) {
      usage = true;
      continue;
    }
    const auto& choice = chunk["choices"][0];
    if (choice["delta"].contains("content")) joined += choice["delta"]["content"].get<std::string>();
    if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
  }
  EXPECT_EQ(joined, text);
  EXPECT_FALSE(finish.empty());
  EXPECT_TRUE(usage);
}

TEST_F(Generation, ConcurrentGreedyRequestsMatchSequentialOnes) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 32; ++i) prompts.push_back("Story number " + std::to_string(i) + ": Lily saw a");
  std::vector<std::string> alone;
  for (const auto& p : prompts) {
    auto r = post(port(), "/v1/chat/completions", chat_body(p, 20));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    alone.push_back(json::parse(r->body)["choices"][0]["message"]["content"]);
  }
  std::vector<std::future<std::string>> futures;
  for (const auto& p : prompts) {
    futures.push_back(std::async(std::launch::async, [this, p] {
      auto r = post(port(), "/v1/chat/completions", chat_body(p, 20));
      return r && r->status == 200 ? json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>()
                                   : std::string("<failed>");
    }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(futures[i].get(), alone[i]) << prompts[i];
  EXPECT_GT(metric_value(port(), "infera_batch_sequences_count{model=\"stories260K\"}"), 0);
}

TEST_F(Generation, DeadlineEndsWithTimeoutFinishReason) {
  json body = chat_body("Once upon a time", 100000);
  body["timeout"] = 0.001;
  auto r = post(port(), "/v1/chat/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["finish_reason"], "timeout");
}

TEST_F(Generation, InvalidInputsAre400NamingTheField) {
  struct Case {
    json body;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"messages", "hello"}}, "messages"},
      {{{"messages", json::array()}}, "messages"},
      {chat_body("x", -5), "max_tokens"},
      {{{"messages", {{{"role", "user"}, {"content", 5}}}}}, "content"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"temperature", "hot"}}, "temperature"},
  };
  for (const auto& c : cases) {
    auto r = post(port(), "/v1/chat/completions", c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body.dump();
    EXPECT_NE(r->body.find(c.field), std::string::npos) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["type"], "invalid_request_error");
  }
  // An unknown model is a 404 naming it (OpenAI's model_not_found).
  auto unknown = post(port(), "/v1/chat/completions",
                      {{"model", "gpt-17"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("gpt-17"), std::string::npos) << unknown->body;
  EXPECT_EQ(json::parse(unknown->body)["error"]["code"], "model_not_found");
  // Invalid UTF-8 inside a JSON string.
  auto bad_utf8 = http_request(port(), "POST", "/v1/chat/completions",
                               "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}");
  ASSERT_TRUE(bad_utf8);
  EXPECT_EQ(bad_utf8->status, 400);
  auto completion = post(port(), "/v1/completions", {{"prompt", 3}});
  ASSERT_TRUE(completion);
  EXPECT_EQ(completion->status, 400);
}

TEST_F(Generation, ClientDisconnectFreesKvBlocks) {
  const double idle = metric_value(port(), "infera_kv_blocks_used{model=\"stories260K\"}");
  ASSERT_EQ(idle, 0);
  {
    Connection c(port());
    std::string body = chat_body("Once upon a time", 100000, true).dump();
    ASSERT_TRUE(c.send_all("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body));
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (metric_value(port(), "infera_kv_blocks_used{model=\"stories260K\"}") <= 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_GT(metric_value(port(), "infera_kv_blocks_used{model=\"stories260K\"}"), 0);
  }  // the client goes away mid-stream
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (metric_value(port(), "infera_kv_blocks_used{model=\"stories260K\"}") != idle && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(metric_value(port(), "infera_kv_blocks_used{model=\"stories260K\"}"), idle);
}

TEST_F(Generation, AssistantChatAnswersWithLatencyAndTokens) {
  auto r = post(port(), "/api/chat", {{"question", "What is a cat?"}, {"role", "student"}, {"session_id", "s1"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto doc = json::parse(r->body);
  EXPECT_TRUE(doc["answer"].is_string());
  EXPECT_EQ(doc["model"], "stories260K");
  EXPECT_GT(doc["latency_ms"].get<double>(), 0);
  EXPECT_GT(doc["tokens"].get<int>(), 0);
  EXPECT_FALSE(doc["cached"].get<bool>());
  auto bad = post(port(), "/api/chat", {{"question", "x"}, {"role", "principal"}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

TEST_F(Generation, SharedSystemPromptReusesPrefixBlocks) {
  std::string system(600, 'a');
  for (size_t i = 0; i < system.size(); i += 7) system[i] = ' ';
  for (int i = 0; i < 3; ++i) {
    json body = {{"messages", {{{"role", "system"}, {"content", system}},
                               {{"role", "user"}, {"content", "question " + std::to_string(i)}}}},
                 {"max_tokens", 4},
                 {"temperature", 0}};
    auto r = post(port(), "/v1/chat/completions", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    if (i > 0) {
      EXPECT_GT(json::parse(r->body)["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
    }
  }
  EXPECT_GE(metric_value(port(), "infera_prefix_cache_hits_total{model=\"stories260K\"}"), 2);
}

TEST_F(Generation, OfficialOpenAiClientWorks) {
  const std::string node_dir = std::string(INFERA_SOURCE_DIR) + "/tests/integration/node";
  if (!std::filesystem::exists(node_dir + "/node_modules/openai")) {
    GTEST_SKIP() << "the openai npm package is not installed (scripts/setup installs it)";
  }
  auto r = run_command("node " + node_dir + "/openai_sdk.mjs http://127.0.0.1:" + std::to_string(port()) +
                       " stories260K");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto line = r.output.substr(r.output.find('{'));
  auto doc = json::parse(line);
  EXPECT_GT(doc["chunks"].get<int>(), 1);
  EXPECT_FALSE(doc["finish"].is_null());
}

TEST_F(Generation, LoadGeneratorReportsLatencyAndThroughput) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port());
  auto closed = run_command(std::string(INFERA_BINARY) + " bench --url " + url +
                            " -c 4 -n 16 --max-tokens 8 --json --no-progress --prompt 'Once upon a time'");
  ASSERT_EQ(closed.exit_code, 0) << closed.output;
  auto doc = json::parse(closed.output.substr(closed.output.find('{')));
  EXPECT_EQ(doc["ok"], 16);
  EXPECT_EQ(doc["requests"], 16);
  EXPECT_GT(doc["output_tokens"].get<int>(), 16);
  EXPECT_GT(doc["output_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(doc["ttft_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(doc["latency_ms"]["p99"].get<double>(), doc["latency_ms"]["p50"].get<double>());

  auto open = run_command(std::string(INFERA_BINARY) + " bench --url " + url +
                          " --rate 20 -d 1 --max-tokens 4 --no-stream --json --no-progress");
  ASSERT_EQ(open.exit_code, 0) << open.output;
  auto o = json::parse(open.output.substr(open.output.find('{')));
  EXPECT_GE(o["ok"].get<int>(), 15);
  EXPECT_LE(o["ok"].get<int>(), 25);

  auto refused = run_command(std::string(INFERA_BINARY) + " bench --url http://127.0.0.1:1 -n 2 --no-progress");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("errors[connect]: 2"), std::string::npos) << refused.output;
}

class GenerationLimits : public ::testing::Test {};

// `n` chat questions of up to 200 tokens at once, each different (identical ones would
// share one generation through the cache); their answers, in order.
std::vector<std::optional<HttpResponse>> ask_at_once(int port, int n) {
  std::vector<std::future<std::optional<HttpResponse>>> futures;
  for (int i = 0; i < n; ++i) {
    futures.push_back(std::async(std::launch::async, [port, i] {
      return post(port, "/v1/chat/completions", chat_body("Once upon a time " + std::to_string(i), 200));
    }));
  }
  std::vector<std::optional<HttpResponse>> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

TEST_F(GenerationLimits, FullKvCachePreemptsInsteadOfTruncating) {
  REQUIRE_MODEL();
  // 256 KV positions for all sequences; each answer needs ~130, eight run at once.
  ServerProcess server({"--model", kModel, "--max-seqs", "8", "--ctx-size", "256", "--batch-timeout", "100"});
  ASSERT_GT(server.port(), 0);
  // Every answer computed (not served from the answer cache).
  auto ask = [&server](const std::string& p) {
    return http_request(server.port(), "POST", "/v1/chat/completions", chat_body(p, 110).dump(),
                        {{"Content-Type", "application/json"}, {"Cache-Control", "no-cache"}});
  };
  std::vector<std::string> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back("Tale " + std::to_string(i) + ": Tom had a");
  std::vector<json> alone;
  for (const auto& p : prompts) {
    auto r = ask(p);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    alone.push_back(json::parse(r->body));
  }
  ASSERT_EQ(metric_value(server.port(), "infera_sequences_preempted_total{model=\"stories260K\"}"), 0);
  std::vector<std::future<std::optional<HttpResponse>>> futures;
  for (const auto& p : prompts) {
    futures.push_back(std::async(std::launch::async, [&ask, p] { return ask(p); }));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json doc = json::parse(r->body);
    // The same answer as alone: same text, same finish reason, same token count.
    EXPECT_EQ(doc["choices"][0]["message"]["content"], alone[i]["choices"][0]["message"]["content"]) << prompts[i];
    EXPECT_EQ(doc["choices"][0]["finish_reason"], alone[i]["choices"][0]["finish_reason"]) << prompts[i];
    EXPECT_EQ(doc["usage"]["completion_tokens"], alone[i]["usage"]["completion_tokens"]) << prompts[i];
  }
  EXPECT_GT(metric_value(server.port(), "infera_sequences_preempted_total{model=\"stories260K\"}"), 0);
}

TEST_F(GenerationLimits, OneClientsQueueIsCappedByTenantMaxQueue) {
  REQUIRE_MODEL();
  // A queue of 64 for everyone, but at most 2 waiting for any one client address.
  ServerProcess server({"--model", kModel, "--max-seqs", "1", "--max-queue", "64", "--tenant-max-queue", "2",
                        "--batch-timeout", "0"});
  ASSERT_GT(server.port(), 0);
  int ok = 0, limited = 0;
  for (const auto& r : ask_at_once(server.port(), 12)) {
    ASSERT_TRUE(r);
    if (r->status == 200) ++ok;
    if (r->status == 429) {
      ++limited;
      const json body = json::parse(r->body);
      EXPECT_NE(body["error"]["message"].get<std::string>().find("ip:127.0.0.1 already has 2 requests waiting"),
                std::string::npos)
          << r->body;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(limited, 1);  // refused long before --max-queue
  EXPECT_GE(metric_value(server.port(), "infera_tenant_queue_refusals_total{model=\"stories260K\"}"), limited);
}

TEST_F(GenerationLimits, FullQueueAnswers429WithRetryAfter) {
  REQUIRE_MODEL();
  ServerProcess server({"--model", kModel, "--max-seqs", "1", "--max-queue", "1", "--batch-timeout", "0"});
  ASSERT_GT(server.port(), 0);
  int ok = 0, limited = 0;
  for (const auto& r : ask_at_once(server.port(), 12)) {
    ASSERT_TRUE(r);
    if (r->status == 200) ++ok;
    if (r->status == 429) {
      ++limited;
      // Whole seconds until the queue ahead should have drained, at least 1.
      EXPECT_GE(std::stoi(r->header("retry-after")), 1) << r->header("retry-after");
      EXPECT_EQ(json::parse(r->body)["error"]["code"], "queue_full");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(limited, 1);
}

}  // namespace
}  // namespace infera::testing
