// Knowledge on a real `infera serve` over real HTTP with real SQLite files: documents
// (text, Markdown, a PDF made here) indexed in the background, hybrid search by
// keyword and by vector, answers with sources, updates and deletes, conversations
// that survive kill -9, and sessions no other key can read. Needs the shared
// tiny-bert-bge.gguf (skipped without ../shared/models).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kTinyBert = std::string(INFERA_SHARED_MODELS) + "/tiny-bert-bge.gguf";
const std::string kStories = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";

std::string sha256_of(const std::string& key) {
  auto r = run_command("printf %s '" + key + "' | sha256sum");
  return r.output.substr(0, 64);
}

// A one-page-per-text PDF with Helvetica text, its xref offsets computed.
std::string make_pdf(const std::vector<std::string>& pages) {
  std::vector<std::string> objects;
  const size_t n = pages.size();
  // 1: catalog, 2: pages, 3: font, then per page: page object, content stream.
  std::string kids;
  for (size_t i = 0; i < n; ++i) kids += std::to_string(4 + 2 * i) + " 0 R ";
  objects.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  objects.push_back("<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(n) + " >>");
  objects.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
  for (size_t i = 0; i < n; ++i) {
    objects.push_back("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents " +
                      std::to_string(5 + 2 * i) + " 0 R >>");
    // One text line per '\n'-separated line, 12 points apart (text past the page's
    // edge would not be extracted).
    std::string stream = "BT /F1 10 Tf 12 TL 72 760 Td";
    size_t at = 0;
    while (at <= pages[i].size()) {
      size_t nl = pages[i].find('\n', at);
      if (nl == std::string::npos) nl = pages[i].size();
      stream += " (" + pages[i].substr(at, nl - at) + ") Tj T*";
      at = nl + 1;
    }
    stream += " ET";
    objects.push_back("<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream + "\nendstream");
  }
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char line[32];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", off);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\nstartxref\n" +
         std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

std::string base64(const std::string& in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
    out += i + 1 < in.size() ? a[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

class Knowledge : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTinyBert)) GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)";
    char tmpl[] = "/tmp/infera-knowledge-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/keys.toml") << "[[keys]]\nname = \"alice\"\nsha256 = \"" << sha256_of("sk-alice")
                                       << "\"\nrole = \"student\"\n\n[[keys]]\nname = \"bob\"\nsha256 = \""
                                       << sha256_of("sk-bob") << "\"\nrole = \"student\"\n\n[[keys]]\nname = "
                                       << "\"root\"\nsha256 = \"" << sha256_of("sk-root") << "\"\nrole = \"admin\"\n";
    start();
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  void start() {
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--model", "bge=" + kTinyBert, "--model", "stories=" + kStories, "--data-dir", dir_ + "/data",
        "--api-keys-file", dir_ + "/keys.toml", "--default-max-tokens", "8", "--max-workers", "2"});
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  std::optional<HttpResponse> call(const std::string& method, const std::string& path, const std::string& body = {},
                                   const std::string& key = "sk-alice",
                                   std::map<std::string, std::string> headers = {}) {
    headers["Authorization"] = "Bearer " + key;
    if (!body.empty() && !headers.count("Content-Type")) headers["Content-Type"] = "application/json";
    return http_request(port_, method, path, body, headers);
  }

  // Waits for a document to leave queued/embedding; returns its last state.
  json wait_ready(int64_t id) {
    json doc;
    for (int i = 0; i < 300; ++i) {
      auto r = call("GET", "/api/documents/" + std::to_string(id));
      if (!r || r->status != 200) return json();
      doc = json::parse(r->body);
      if (doc["status"] == "ready" || doc["status"] == "failed") return doc;
      std::this_thread::sleep_for(50ms);
    }
    return doc;
  }

  json search(const std::string& query, const std::string& collection = "course", int k = 5) {
    auto r = call("POST", "/api/search", json{{"query", query}, {"collection", collection}, {"top_k", k}}.dump());
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body, nullptr, false);
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
};

const char* kPlanted =
    "The zorblax enzyme folds quantum proteins inside the glimmer organelle of sea turtles.";

TEST_F(Knowledge, UploadSearchAnswerUpdateDelete) {
  // Plain text as a raw body: one chunk whose text the vector search must find as itself.
  auto text = call("POST", "/api/documents?collection=course&name=enzymes.txt", kPlanted, "sk-alice",
                   {{"Content-Type", "text/plain"}});
  ASSERT_TRUE(text);
  ASSERT_EQ(text->status, 202) << text->body;
  const int64_t text_id = json::parse(text->body)["id"];
  EXPECT_EQ(json::parse(text->body)["status"], "queued");

  // Markdown as multipart/form-data, as browsers and curl -F send it.
  const std::string boundary = "----inferaBoundary7MA4YWxk";
  const std::string markdown =
      "# Cells\n\nThe ribosome builds proteins from amino acids.\n\n## Energy\n\nMitochondria make ATP.\n\n"
      "# Plants\n\nPhotosynthesis in chloroplasts turns light into sugar.\n";
  std::string form = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"collection\"\r\n\r\ncourse\r\n--" +
                     boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"biology.md\"\r\n" +
                     "Content-Type: application/octet-stream\r\n\r\n" + markdown + "\r\n--" + boundary + "--\r\n";
  auto md = call("POST", "/api/documents", form, "sk-alice",
                 {{"Content-Type", "multipart/form-data; boundary=" + boundary}});
  ASSERT_TRUE(md);
  ASSERT_EQ(md->status, 202) << md->body;
  const int64_t md_id = json::parse(md->body)["id"];

  // A PDF made here, as JSON with base64 content.
  std::string volcanoes;
  std::string glaciers;
  for (int i = 0; i < 55; ++i) volcanoes += "Volcanoes erupt basalt lava near the coast.\n";  // most of a chunk
  for (int i = 0; i < 25; ++i) glaciers += "Glaciers carve fjords on page two.\n";  // past the chunk's end
  const std::string pdf = make_pdf({volcanoes, glaciers});
  auto p = call("POST", "/api/documents",
                json{{"collection", "course"}, {"name", "geology.pdf"}, {"content_base64", base64(pdf)}}.dump());
  ASSERT_TRUE(p);
  ASSERT_EQ(p->status, 202) << p->body;
  const int64_t pdf_id = json::parse(p->body)["id"];

  for (int64_t id : {text_id, md_id, pdf_id}) {
    json doc = wait_ready(id);
    EXPECT_EQ(doc["status"], "ready") << doc.dump();
    EXPECT_EQ(doc["chunks_done"], doc["chunks_total"]) << doc.dump();
    EXPECT_GE(doc["chunks_total"].get<int>(), 1);
    EXPECT_DOUBLE_EQ(doc["progress"].get<double>(), 1.0);
  }
  EXPECT_EQ(wait_ready(md_id)["format"], "markdown");
  EXPECT_EQ(wait_ready(pdf_id)["format"], "pdf");
  EXPECT_GE(wait_ready(md_id)["chunks_total"].get<int>(), 2);  // two top-level sections

  auto cols = call("GET", "/api/collections");
  ASSERT_TRUE(cols);
  json c = json::parse(cols->body)["data"];
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]["name"], "course");
  EXPECT_EQ(c[0]["documents"], 3);
  EXPECT_EQ(c[0]["embedding_model"], "bge");
  EXPECT_EQ(c[0]["dimensions"], 64);

  // By keyword: the planted rare word.
  json hits = search("zorblax");
  ASSERT_GE(hits["data"].size(), 1u) << hits.dump();
  EXPECT_EQ(hits["data"][0]["document"], "enzymes.txt");
  EXPECT_EQ(hits["data"][0]["keyword"]["rank"], 1);
  // By vector: the passage itself, without a rare word to match... the same text embeds
  // to the same vector, so it ranks first by similarity.
  hits = search(kPlanted);
  ASSERT_GE(hits["data"].size(), 1u);
  bool vector_first = false;
  for (const auto& h : hits["data"]) {
    if (h["document"] == "enzymes.txt" && !h["vector"].is_null()) {
      vector_first = h["vector"]["rank"] == 1 && h["vector"]["score"].get<double>() > 0.99;
    }
  }
  EXPECT_TRUE(vector_first) << hits.dump();
  // PDF pages are cited.
  hits = search("glaciers fjords");
  ASSERT_GE(hits["data"].size(), 1u);
  EXPECT_EQ(hits["data"][0]["document"], "geology.pdf");
  EXPECT_EQ(hits["data"][0]["page"], 2) << hits.dump();

  // Answers carry their sources: /api/chat and the chat completions' extension, streamed.
  auto chat = call("POST", "/api/chat", json{{"question", "What does the zorblax enzyme fold?"}, {"collection", "course"}}.dump());
  ASSERT_TRUE(chat);
  ASSERT_EQ(chat->status, 200) << chat->body;
  json answer = json::parse(chat->body);
  ASSERT_TRUE(answer.contains("sources")) << chat->body;
  ASSERT_GE(answer["sources"].size(), 1u);
  EXPECT_EQ(answer["sources"][0]["document"], "enzymes.txt");
  EXPECT_EQ(answer["sources"][0]["index"], 1);
  auto stream = call("POST", "/v1/chat/completions",
                     json{{"messages", {{{"role", "user"}, {"content", "Tell me about glaciers"}}}},
                          {"knowledge", {{"collection", "course"}, {"top_k", 2}}},
                          {"stream", true},
                          {"max_tokens", 4}}
                         .dump());
  ASSERT_TRUE(stream);
  ASSERT_EQ(stream->status, 200) << stream->body;
  const size_t first = stream->body.find("data: ");
  const size_t end = stream->body.find("\n\n", first);
  json chunk = json::parse(stream->body.substr(first + 6, end - first - 6));
  ASSERT_TRUE(chunk.contains("sources")) << chunk.dump();
  EXPECT_EQ(chunk["sources"][0]["document"], "geology.pdf");
  auto unknown = call("POST", "/api/chat", json{{"question", "x"}, {"collection", "nope"}}.dump());
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404) << unknown->body;

  // Update: the old passage leaves search, the new one arrives.
  auto put = call("PUT", "/api/documents/" + std::to_string(text_id),
                  "The quillion reactor cools with liquid helium.", "sk-alice", {{"Content-Type", "text/plain"}});
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 202) << put->body;
  EXPECT_EQ(wait_ready(text_id)["status"], "ready");
  const json after_update = search("zorblax");
  for (const auto& h : after_update["data"]) {  // vectors still rank something; never the old text
    EXPECT_EQ(h["text"].get<std::string>().find("zorblax"), std::string::npos) << h.dump();
    EXPECT_TRUE(h["keyword"].is_null()) << h.dump();
  }
  hits = search("quillion");
  ASSERT_GE(hits["data"].size(), 1u);
  EXPECT_EQ(hits["data"][0]["document"], "enzymes.txt");

  // Another student may not delete it; its owner may, and it leaves search at once.
  auto other = call("DELETE", "/api/documents/" + std::to_string(text_id), "", "sk-bob");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
  auto del = call("DELETE", "/api/documents/" + std::to_string(text_id));
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200) << del->body;
  const json after_delete = search("quillion reactor helium");
  for (const auto& h : after_delete["data"]) EXPECT_NE(h["document"], "enzymes.txt");
  auto gone = call("GET", "/api/documents/" + std::to_string(text_id));
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->status, 404);
}

TEST_F(Knowledge, RefusesBadUploadsAndSearches) {
  struct Case {
    std::string path, body, content_type;
    int status;
  };
  const std::string png("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  const std::vector<Case> cases = {
      {"/api/documents?name=a.txt", "no collection", "text/plain", 400},
      {"/api/documents?collection=c&name=a.txt", "", "text/plain", 400},
      {"/api/documents?collection=c&name=image.png", png, "image/png", 400},
      {"/api/documents", R"({"collection":"c","text":"x","content_base64":"eA=="})", "application/json", 400},
      {"/api/documents", R"({"collection":"c","content_base64":"***"})", "application/json", 400},
      {"/api/documents", "--x\r\nno end", "multipart/form-data; boundary=x", 400},
      {"/api/search", R"({"query":"x","collection":"missing"})", "application/json", 404},
      {"/api/search", R"({"collection":"c"})", "application/json", 400},
      {"/api/search", R"({"query":"x","collection":"c","top_k":0})", "application/json", 400},
  };
  for (const Case& c : cases) {
    auto r = call("POST", c.path, c.body, "sk-alice", {{"Content-Type", c.content_type}});
    ASSERT_TRUE(r) << c.path;
    EXPECT_EQ(r->status, c.status) << c.path << " " << c.body.substr(0, 40) << " -> " << r->body;
    EXPECT_NE(r->body.find("\"error\""), std::string::npos) << r->body;
  }
  auto bad_id = call("GET", "/api/documents/abc");
  ASSERT_TRUE(bad_id);
  EXPECT_EQ(bad_id->status, 400);
  // Hostile full-text syntax is just words.
  call("POST", "/api/documents?collection=c&name=a.txt", "quotes and stars", "sk-alice", {{"Content-Type", "text/plain"}});
  for (const char* q : {"\"unbalanced", "a* OR (b", "NEAR(x y", "-", "col:umn"}) {
    auto r = call("POST", "/api/search", json{{"query", q}, {"collection", "c"}}.dump());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << q << " -> " << r->body;
  }
  // Only admins delete collections.
  auto student = call("DELETE", "/api/collections/c");
  ASSERT_TRUE(student);
  EXPECT_EQ(student->status, 403);
  auto admin = call("DELETE", "/api/collections/c", "", "sk-root");
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 200) << admin->body;
}

TEST_F(Knowledge, AnsweredTurnsSurviveKillAndStayWithTheirKey) {
  std::vector<std::string> answers;
  for (const char* q : {"Once upon a time", "What happened next?", "How did it end?"}) {
    auto r = call("POST", "/api/chat", json{{"question", q}, {"session_id", "lesson-1"}}.dump());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    answers.push_back(json::parse(r->body)["answer"]);
  }
  // Bob's session of the same name is his own.
  auto bob = call("POST", "/api/chat", json{{"question", "Bob asks"}, {"session_id", "lesson-1"}}.dump(), "sk-bob");
  ASSERT_TRUE(bob);
  ASSERT_EQ(bob->status, 200);

  server_->signal(SIGKILL);
  server_->wait_exit(10s);
  start();

  auto msgs = call("GET", "/api/sessions/lesson-1/messages");
  ASSERT_TRUE(msgs);
  ASSERT_EQ(msgs->status, 200) << msgs->body;
  json data = json::parse(msgs->body)["data"];
  ASSERT_EQ(data.size(), 6u) << msgs->body;
  EXPECT_EQ(data[0]["role"], "user");
  EXPECT_EQ(data[0]["content"], "Once upon a time");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(data[2 * i + 1]["role"], "assistant");
    EXPECT_EQ(data[2 * i + 1]["content"], answers[i]);
  }
  auto bobs = call("GET", "/api/sessions/lesson-1/messages", "", "sk-bob");
  ASSERT_TRUE(bobs);
  ASSERT_EQ(bobs->status, 200);
  EXPECT_EQ(json::parse(bobs->body)["data"].size(), 2u);
  EXPECT_EQ(json::parse(bobs->body)["data"][0]["content"], "Bob asks");

  // Full-text search over one's own messages only.
  auto found = call("GET", "/api/sessions?q=happened");
  ASSERT_TRUE(found);
  ASSERT_EQ(found->status, 200);
  ASSERT_EQ(json::parse(found->body)["data"].size(), 1u) << found->body;
  EXPECT_EQ(json::parse(found->body)["data"][0]["id"], "lesson-1");
  auto not_bobs = call("GET", "/api/sessions?q=happened", "", "sk-bob");
  ASSERT_TRUE(not_bobs);
  EXPECT_EQ(json::parse(not_bobs->body)["data"].size(), 0u) << not_bobs->body;

  // Bob cannot delete Alice's session (his own of that name goes), nor read hers after.
  auto del = call("DELETE", "/api/sessions/lesson-1", "", "sk-bob");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200);
  auto still = call("GET", "/api/sessions/lesson-1/messages");
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
  EXPECT_EQ(json::parse(still->body)["data"].size(), 6u);
  auto bob_gone = call("GET", "/api/sessions/lesson-1/messages", "", "sk-bob");
  ASSERT_TRUE(bob_gone);
  EXPECT_EQ(bob_gone->status, 404);
  auto unknown = call("GET", "/api/sessions/never/messages");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

// Documents may be larger than MAX_CONTENT_LENGTH, up to --max-document-bytes.
TEST(KnowledgeUploads, DocumentLimitIsItsOwn) {
  if (!fs::exists(kTinyBert)) GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)";
  char tmpl[] = "/tmp/infera-knowledge-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  ServerProcess server({"--model", "bge=" + kTinyBert, "--data-dir", dir, "--max-document-bytes", "2MiB",
                        "--max-content-length", "1MiB"});
  ASSERT_NE(server.port(), 0);
  auto upload = [&](size_t bytes) {
    std::string text;
    while (text.size() < bytes) text += "Plants make sugar from light and water. ";
    text.resize(bytes);
    return http_request(server.port(), "POST", "/api/documents?collection=big&name=big.txt", text,
                        {{"Content-Type", "text/plain"}});
  };
  auto ok = upload(1536 * 1024);  // past MAX_CONTENT_LENGTH, within the document limit
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202) << ok->body;
  auto over = upload(2560 * 1024);  // past the document limit, within the route's body limit
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 400) << over->body;
  EXPECT_NE(over->body.find("at most"), std::string::npos) << over->body;
  // Larger than the route's body limit: refused from the headers alone.
  auto headers_only = [&](const std::string& path) {
    Connection c(server.port());
    EXPECT_TRUE(c.connected());
    c.send_all("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " +
               std::to_string(4 * 1024 * 1024) + "\r\n\r\n");
    auto r = c.read_response();
    return r ? r->status : -1;
  };
  EXPECT_EQ(headers_only("/api/documents?collection=big&name=big.txt"), 413);
  // Other routes keep MAX_CONTENT_LENGTH.
  auto small = http_request(server.port(), "POST", "/v1/embeddings", std::string(1536 * 1024, 'x'),
                            {{"Content-Type", "application/json"}});
  EXPECT_TRUE(!small || small->status == 413);
  EXPECT_EQ(headers_only("/v1/embeddings"), 413);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace infera::testing
