// The model registry of a real `infera serve` over real HTTP: the bundled default
// model, lazy loads, budgets and eviction, pinning, keep-alive, file changes.
// Models are copies of the repository's own stories260K-tok512.gguf.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kDefaultModel =
    std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";

// A fresh directory holding `names`.gguf, each a copy of the default model.
class ModelDir {
 public:
  explicit ModelDir(const std::vector<std::string>& names) {
    char tmpl[] = "/tmp/infera-models-XXXXXX";
    dir_ = mkdtemp(tmpl);
    for (const auto& n : names) fs::copy_file(kDefaultModel, path(n));
  }
  ~ModelDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name + ".gguf"; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

std::optional<HttpResponse> post(int port, const std::string& path, const json& body) {
  return http_request(port, "POST", path, body.dump(), {{"Content-Type", "application/json"}});
}

json completion(const std::string& model, int max_tokens = 4) {
  return {{"model", model},
          {"prompt", "Once upon a time"},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

// /api/models as name -> row.
std::map<std::string, json> model_rows(int port) {
  std::map<std::string, json> out;
  auto r = http_request(port, "GET", "/api/models");
  if (!r || r->status != 200) {
    ADD_FAILURE() << "GET /api/models: " << (r ? r->body : "no answer");
    return out;
  }
  const json doc = json::parse(r->body);
  for (const auto& m : doc["models"]) out[m["name"]] = m;
  return out;
}

// Polls /api/models until `name` is in `state` or 10 s pass.
bool wait_state(int port, const std::string& name, const std::string& state) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (model_rows(port)[name].value("state", "") == state) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Polls until `n` models are loaded (10 s at most).
bool eventually_loaded(int port, int n) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    int loaded = 0;
    for (const auto& [name, row] : model_rows(port)) loaded += row["state"] == "loaded" ? 1 : 0;
    if (loaded >= n) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

TEST(Models, DefaultModelAnswersInEnglishOutOfTheBox) {
  ServerProcess server({});
  ASSERT_GT(server.port(), 0);
  auto r =
      post(server.port(), "/api/chat", {{"question", "Once upon a time"}, {"role", "student"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto doc = json::parse(r->body);
  EXPECT_EQ(doc["model"], "stories260K");
  const std::string answer = doc["answer"];
  int words = 0;
  for (const char* w : {" the ", " was ", " a ", " and ", " to ", " she ", " he ", " they "}) {
    if (answer.find(w) != std::string::npos) ++words;
  }
  EXPECT_GE(words, 3) << answer;
  auto models = http_request(server.port(), "GET", "/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "stories260K");
}

TEST(Models, UnknownModelIs404NamingIt) {
  ServerProcess server({"--model", "tiny=" + kDefaultModel});
  ASSERT_GT(server.port(), 0);
  auto r = post(server.port(), "/v1/completions", completion("no-such-model"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  auto err = json::parse(r->body)["error"];
  EXPECT_EQ(err["code"], "model_not_found");
  EXPECT_NE(err["message"].get<std::string>().find("no-such-model"), std::string::npos);
  EXPECT_NE(err["message"].get<std::string>().find("tiny"), std::string::npos);
}

TEST(Models, LoadsLazilyAndConcurrentFirstRequestsLoadOnce) {
  ModelDir dir({"a", "b"});
  ServerProcess server({"--models-dir", dir.dir()});
  ASSERT_GT(server.port(), 0);
  auto rows = model_rows(server.port());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows["a"]["state"], "available");
  EXPECT_EQ(rows["b"]["state"], "available");
  std::vector<std::future<int>> results;
  for (int i = 0; i < 8; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      auto r = post(server.port(), "/v1/completions", completion("b"));
      return r ? r->status : 0;
    }));
  }
  for (auto& f : results) EXPECT_EQ(f.get(), 200);
  rows = model_rows(server.port());
  EXPECT_EQ(rows["b"]["state"], "loaded");
  EXPECT_EQ(rows["b"]["loads"], 1);
  EXPECT_EQ(rows["b"]["requests"], 8);
  EXPECT_EQ(rows["a"]["state"], "available");
}

// Three models under a byte budget that fits two: the third's first request evicts
// the least valuable (fewest recent requests x reload time); no request fails while
// models swap.
TEST(Models, ThirdModelEvictsTheLeastValuableUnderAByteBudget) {
  ModelDir dir({"a", "b", "c"});
  uint64_t one = 0;
  {
    ServerProcess probe({"--models-dir", dir.dir(), "--ctx-size", "512"});
    ASSERT_GT(probe.port(), 0);
    one = model_rows(probe.port())["a"]["bytes"].get<uint64_t>();
  }
  ASSERT_GT(one, 0u);
  const uint64_t budget = one * 5 / 2;
  ServerProcess server({"--models-dir", dir.dir(), "--ctx-size", "512", "--model-cache-size", "10",
                        "--models-memory-budget", std::to_string(budget)});
  ASSERT_GT(server.port(), 0);
  for (int i = 0; i < 6; ++i)
    ASSERT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("b"))->status, 200);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("c"))->status, 200);
  auto rows = model_rows(server.port());
  EXPECT_EQ(rows["a"]["state"], "loaded");
  EXPECT_EQ(rows["b"]["state"], "available");
  EXPECT_EQ(rows["c"]["state"], "loaded");
  auto list = json::parse(http_request(server.port(), "GET", "/api/models")->body);
  EXPECT_LE(list["loaded_bytes"].get<uint64_t>(), budget);

  // Many clients over all three: models keep swapping, every request answers.
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        const char* name[] = {"a", "b", "c"};
        auto r = post(server.port(), "/v1/completions", completion(name[(t + i) % 3], 8));
        if (!r || r->status != 200) failures.fetch_add(1);
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_NE(server.logs().find("evicting"), std::string::npos);
}

TEST(Models, APinnedModelStaysWhileOthersSwap) {
  ModelDir dir({"a", "b", "c"});
  const std::string file = dir.dir() + "/models.toml";
  std::ofstream(file) << "[[models]]\nname = \"a\"\npath = \"a.gguf\"\npin = true\n"
                      << "[[models]]\nname = \"b\"\npath = \"b.gguf\"\n"
                      << "[[models]]\nname = \"c\"\npath = \"c.gguf\"\n";
  ServerProcess server({"--models-file", file, "--model-cache-size", "2"});
  ASSERT_GT(server.port(), 0);
  EXPECT_EQ(model_rows(server.port())["a"]["state"], "loaded");  // pinned: loaded at start
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(post(server.port(), "/v1/completions", completion(i % 2 ? "b" : "c"))->status, 200);
    EXPECT_EQ(model_rows(server.port())["a"]["state"], "loaded");
  }
  auto rows = model_rows(server.port());
  EXPECT_EQ(rows["a"]["loads"], 1);
  EXPECT_GE(rows["b"]["loads"].get<int>() + rows["c"]["loads"].get<int>(), 4);
  EXPECT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
}

TEST(Models, AModelThatCannotFitGets503WithTheReason) {
  ModelDir dir({"a", "b"});
  const std::string file = dir.dir() + "/models.toml";
  std::ofstream(file) << "[[models]]\nname = \"a\"\npath = \"a.gguf\"\npin = true\n"
                      << "[[models]]\nname = \"b\"\npath = \"b.gguf\"\n";
  ServerProcess server({"--models-file", file, "--model-cache-size", "1"});
  ASSERT_GT(server.port(), 0);
  auto r = post(server.port(), "/v1/completions", completion("b"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  auto err = json::parse(r->body)["error"];
  EXPECT_EQ(err["code"], "model_unavailable");
  EXPECT_NE(err["message"].get<std::string>().find("pinned: a"), std::string::npos) << r->body;
  EXPECT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
}

TEST(Models, KeepAliveUnloadsIdleModels) {
  ModelDir dir({"a", "b"});
  const std::string file = dir.dir() + "/models.toml";
  std::ofstream(file) << "[[models]]\nname = \"a\"\npath = \"a.gguf\"\nkeep_alive = \"300ms\"\n"
                      << "[[models]]\nname = \"b\"\npath = \"b.gguf\"\n";
  ServerProcess server({"--models-file", file});
  ASSERT_GT(server.port(), 0);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("b"))->status, 200);
  EXPECT_TRUE(wait_state(server.port(), "a", "available"));
  EXPECT_EQ(model_rows(server.port())["b"]["state"], "loaded");  // default keep_alive: -1

  // Ollama's per-request keep_alive: 0 unloads as soon as the request is done.
  json body = completion("b");
  body["keep_alive"] = 0;
  ASSERT_EQ(post(server.port(), "/v1/completions", body)->status, 200);
  EXPECT_TRUE(wait_state(server.port(), "b", "available"));
  body["keep_alive"] = "soon";
  auto bad = post(server.port(), "/v1/completions", body);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("keep_alive"), std::string::npos);
}

TEST(Models, LoadAndUnloadRoutes) {
  ModelDir dir({"a"});
  ServerProcess server({"--models-dir", dir.dir()});
  ASSERT_GT(server.port(), 0);
  auto loaded = http_request(server.port(), "POST", "/api/models/a/load");
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->status, 200) << loaded->body;
  EXPECT_EQ(json::parse(loaded->body)["state"], "loaded");
  auto unloaded = http_request(server.port(), "POST", "/api/models/a/unload");
  ASSERT_EQ(unloaded->status, 200) << unloaded->body;
  EXPECT_EQ(json::parse(unloaded->body)["state"], "available");
  EXPECT_EQ(http_request(server.port(), "POST", "/api/models/zzz/load")->status, 404);
}

TEST(Models, ShutdownWithGenerationsInFlightExitsCleanly) {
  ModelDir dir({"a", "b"});
  ServerProcess server({"--models-dir", dir.dir(), "--drain-timeout-ms", "100", "--alert-webhook",
                        "http://127.0.0.1:9/hook"});
  ASSERT_GT(server.port(), 0);
  // Long streams on two models, still generating when the drain gives up.
  std::vector<std::thread> clients;
  for (const char* m : {"a", "b"}) {
    clients.emplace_back([&, m] {
      json body = completion(m, 4000);
      body["stream"] = true;
      post(server.port(), "/v1/completions", body);
    });
  }
  ASSERT_TRUE(eventually_loaded(server.port(), 2));
  server.signal(SIGTERM);
  auto status = server.wait_exit(15s);
  for (auto& c : clients) c.join();
  ASSERT_TRUE(status.has_value()) << "infera did not exit within 15 s of SIGTERM";
  EXPECT_EQ(*status, 0) << server.logs();
  EXPECT_NE(server.logs().find("drain timed out"), std::string::npos) << "no request was in flight";
}

TEST(Models, ModelNamesInRoutesArePercentDecoded) {
  ModelDir dir({"a"});
  const std::string file = dir.dir() + "/models.toml";
  std::ofstream(file) << "[[models]]\nname = \"my model\"\npath = \"a.gguf\"\n";
  ServerProcess server({"--models-file", file});
  ASSERT_GT(server.port(), 0);
  auto loaded = http_request(server.port(), "POST", "/api/models/my%20model/load");
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->status, 200) << loaded->body;
  EXPECT_EQ(json::parse(loaded->body)["name"], "my model");
}

TEST(Models, AChangedFileIsReloadedWhenIdle) {
  ModelDir dir({"a"});
  ServerProcess server({"--models-dir", dir.dir()});
  ASSERT_GT(server.port(), 0);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
  const std::string before = model_rows(server.port())["a"]["identity"];
  // A new file under the same name (the trained model with the full 32000 vocab).
  const std::string other = std::string(INFERA_SHARED_MODELS) + "/stories260K.gguf";
  fs::copy_file(fs::exists(other) ? other : kDefaultModel, dir.path("a"),
                fs::copy_options::overwrite_existing);
  fs::last_write_time(dir.path("a"), fs::file_time_type::clock::now() + 5s);
  auto deadline = std::chrono::steady_clock::now() + 15s;
  json row;
  while (std::chrono::steady_clock::now() < deadline) {
    row = model_rows(server.port())["a"];
    if (row["loads"] == 2 && row["state"] == "loaded") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(row["loads"], 2);
  EXPECT_NE(row["identity"], before);
  EXPECT_EQ(post(server.port(), "/v1/completions", completion("a"))->status, 200);
}

// The first load of a Q4_0 model writes its packed image into --packed-cache-dir; the
// load after an unload maps it (where the CPU's kernel table repacks at all).
TEST(Models, ASecondLoadMapsThePackedImageTheFirstWrote) {
  const std::string vocab = std::string(INFERA_SHARED_MODELS) + "/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  ModelDir dir(std::vector<std::string>{});
  const std::string packed = dir.dir() + "/packed";
  const CommandResult synth = run_command(
      std::string(INFERA_BINARY) + " synth -o " + dir.path("q") +
      " --type q4_0 --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab " + vocab);
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  ServerProcess server({"--models-dir", dir.dir(), "--packed-cache-dir", packed});
  ASSERT_GT(server.port(), 0);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("q"))->status, 200);
  if (server.logs().find("repacked, writing its image") == std::string::npos) {
    GTEST_SKIP() << "this CPU's kernel table repacks nothing";
  }
  auto deadline = std::chrono::steady_clock::now() + 10s;
  auto image_written = [&] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(packed, ec)) {
      if (e.path().extension() == ".packed") return true;
    }
    return false;
  };
  while (!image_written() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(image_written());
  ASSERT_EQ(http_request(server.port(), "POST", "/api/models/q/unload")->status, 200);
  ASSERT_EQ(post(server.port(), "/v1/completions", completion("q"))->status, 200);
  EXPECT_NE(server.logs().find("mapped its packed image"), std::string::npos) << server.logs();
}

TEST(Models, BadModelsFileStopsStartWithAClearMessage) {
  ModelDir dir(std::vector<std::string>{});
  const std::string file = dir.dir() + "/models.toml";
  std::ofstream(file) << "[[models]]\nname = \"a\"\npath = \"a.gguf\"\ncolour = \"blue\"\n";
  auto r =
      run_command(std::string(INFERA_BINARY) + " serve --port 0 --models-file " + file + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown key 'colour'"), std::string::npos) << r.output;
  std::ofstream(file, std::ios::trunc) << "[[models]]\nname = \"a\"\npath = \"missing.gguf\"\n";
  r = run_command(std::string(INFERA_BINARY) + " serve --port 0 --models-file " + file + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("missing.gguf: no such file"), std::string::npos) << r.output;
  std::ofstream(file, std::ios::trunc) << "[[models]]\nname = \"a\"\npath = \"" << kDefaultModel
                                       << "\"\nchat_template = \"fancy\"\n";
  // Bounded: were the file accepted, the server would keep running.
  r = run_command("timeout 10 " + std::string(INFERA_BINARY) + " serve --port 0 --models-file " +
                  file + " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown chat_template 'fancy'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace infera::testing
