// The Store contract, written against the interface: every backend is one entry in
// kBackends (a PostgreSQL backend adds its factory there) and must pass all of
// StoreContract. Backend-specific tests (SQLite's file handling) follow at the end.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace infera::store {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "infera-store-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct Backend {
  const char* name;
  // Opens the store kept at `location` (a directory for SQLite; a PostgreSQL backend
  // would derive a database name from it). Opening the same location again must see
  // the same data.
  std::function<Result<std::unique_ptr<Store>>(const std::filesystem::path&)> open;
};

void PrintTo(const Backend& backend, std::ostream* os) { *os << backend.name; }

const Backend kBackends[] = {
    {"sqlite", [](const std::filesystem::path& dir) { return open_sqlite(dir); }},
};

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { store_ = reopen(); }

  std::unique_ptr<Store> reopen() {
    store_.reset();
    Result<std::unique_ptr<Store>> s = GetParam().open(dir_.path());
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // A collection with one document of the given chunk texts; returns the document id.
  std::int64_t add_document(const std::string& collection, const std::string& name,
                            const std::vector<std::string>& texts, const std::string& owner = "") {
    EXPECT_TRUE(store_->ensure_collection({collection, owner, "", 0}).ok());
    Result<Document> doc = store_->create_document({collection, owner, {name, "text", "", 10}});
    EXPECT_TRUE(doc.ok()) << doc.status().message();
    std::vector<NewChunk> chunks;
    for (size_t i = 0; i < texts.size(); ++i) {
      chunks.push_back({static_cast<int>(i), texts[i], "Intro > Part " + std::to_string(i), 0, 5});
    }
    Result<ChunkChange> change = store_->replace_document_content(doc->id, doc->content, chunks);
    EXPECT_TRUE(change.ok()) << change.status().message();
    return doc->id;
  }

  std::vector<std::int64_t> keyword_ids(const std::string& collection, const std::string& query) {
    Result<std::vector<KeywordHit>> hits = store_->keyword_search(collection, query, 10);
    EXPECT_TRUE(hits.ok()) << query << ": " << hits.status().message();
    std::vector<std::int64_t> ids;
    if (hits.ok()) {
      for (const KeywordHit& h : *hits) ids.push_back(h.chunk_id);
    }
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContract, CollectionsCountTheirDocumentsAndChunks) {
  add_document("biology", "cells.md", {"cells divide", "mitochondria make energy"});
  add_document("biology", "plants.md", {"photosynthesis"});
  add_document("history", "rome.md", {"Rome was not built in a day"});
  Result<std::vector<Collection>> all = store_->list_collections();
  ASSERT_TRUE(all.ok()) << all.status().message();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "biology");
  EXPECT_EQ((*all)[0].document_count, 2);
  EXPECT_EQ((*all)[0].chunk_count, 3);
  EXPECT_EQ((*all)[1].name, "history");
  EXPECT_EQ((*all)[1].chunk_count, 1);
}

TEST_P(StoreContract, ACollectionKeepsOneEmbeddingModel) {
  ASSERT_TRUE(store_->ensure_collection({"c", "alice", "", 0}).ok());
  Result<Collection> set = store_->ensure_collection({"c", "bob", "bge-small", 384});
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ(set->owner, "alice");  // the creator stays the owner
  EXPECT_EQ(set->embedding_model, "bge-small");
  EXPECT_EQ(set->dims, 384);
  Result<Collection> other = store_->ensure_collection({"c", "", "minilm", 384});
  EXPECT_EQ(other.status().code(), StatusCode::kInvalidArgument);
  Result<Collection> dims = store_->ensure_collection({"c", "", "bge-small", 768});
  EXPECT_EQ(dims.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->ensure_collection({"c", "", "", 0}).ok());
  EXPECT_EQ(store_->ensure_collection({"", "", "", 0}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(StoreContract, DocumentNeedsAnExistingCollection) {
  Result<Document> doc = store_->create_document({"nowhere", "", {"a.txt", "text", "", 1}});
  EXPECT_EQ(doc.status().code(), StatusCode::kNotFound);
}

TEST_P(StoreContract, DocumentLifecycleTracksStatusAndProgress) {
  ASSERT_TRUE(store_->ensure_collection({"c", "", "m", 3}).ok());
  Result<Document> doc =
      store_->create_document({"c", "alice", {"notes.md", "markdown", "Notes", 42}});
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->status, DocumentStatus::kQueued);
  EXPECT_GT(doc->id, 0);

  std::vector<NewChunk> chunks = {{0, "first text", "A", 1, 2}, {1, "second text", "A > B", 2, 2}};
  Result<ChunkChange> change = store_->replace_document_content(doc->id, doc->content, chunks);
  ASSERT_TRUE(change.ok()) << change.status().message();
  EXPECT_TRUE(change->removed_ids.empty());
  ASSERT_EQ(change->added_ids.size(), 2u);

  Result<Document> got = store_->get_document(doc->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->content.name, "notes.md");
  EXPECT_EQ(got->content.title, "Notes");
  EXPECT_EQ(got->content.bytes, 42);
  EXPECT_EQ(got->owner, "alice");
  EXPECT_EQ(got->chunks_total, 2);
  EXPECT_EQ(got->chunks_done, 0);

  ASSERT_TRUE(store_->set_document_status(doc->id, DocumentStatus::kEmbedding, "").ok());
  const float v0[] = {1, 0, 0};
  const float v1[] = {0, 0.5f, -2};
  ChunkEmbedding first[] = {{change->added_ids[0], v0}};
  Result<std::int64_t> stored = store_->set_embeddings(first);
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(*stored, 1);
  EXPECT_EQ(store_->get_document(doc->id)->chunks_done, 1);
  ChunkEmbedding second[] = {{change->added_ids[1], v1}};
  ASSERT_TRUE(store_->set_embeddings(second).ok());
  EXPECT_EQ(store_->get_document(doc->id)->chunks_done, 2);
  ASSERT_TRUE(store_->set_document_status(doc->id, DocumentStatus::kReady, "ignored").ok());
  got = store_->get_document(doc->id);
  EXPECT_EQ(got->status, DocumentStatus::kReady);
  EXPECT_EQ(got->error, "");

  Result<std::vector<Chunk>> listed = store_->document_chunks(doc->id);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[1].text, "second text");
  EXPECT_EQ((*listed)[1].heading, "A > B");
  EXPECT_EQ((*listed)[1].page, 2);
  EXPECT_EQ((*listed)[1].document_name, "notes.md");
  EXPECT_TRUE((*listed)[1].has_embedding);

  std::vector<std::pair<std::int64_t, std::vector<float>>> seen;
  ASSERT_TRUE(store_
                  ->for_each_embedding("c",
                                       [&](std::int64_t id, std::span<const float> v) {
                                         seen.emplace_back(id,
                                                           std::vector<float>(v.begin(), v.end()));
                                       })
                  .ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, change->added_ids[0]);
  EXPECT_EQ(seen[0].second, std::vector<float>(std::begin(v0), std::end(v0)));
  EXPECT_EQ(seen[1].second, std::vector<float>(std::begin(v1), std::end(v1)));
  EXPECT_EQ(*store_->embedded_chunk_ids("c"), change->added_ids);

  ASSERT_TRUE(store_->set_document_status(doc->id, DocumentStatus::kFailed, "embedder gone").ok());
  EXPECT_EQ(store_->get_document(doc->id)->error, "embedder gone");
  EXPECT_EQ(store_->set_document_status(999999, DocumentStatus::kReady, "").code(),
            StatusCode::kNotFound);
}

TEST_P(StoreContract, ListsDocumentsByCollectionAndOwner) {
  add_document("a", "1.txt", {"x"}, "alice");
  add_document("a", "2.txt", {"x"}, "bob");
  add_document("b", "3.txt", {"x"}, "alice");
  auto names = [&](DocumentFilter f) {
    std::vector<std::string> out;
    Result<std::vector<Document>> docs = store_->list_documents(f);
    EXPECT_TRUE(docs.ok());
    for (const Document& d : *docs) out.push_back(d.content.name);
    return out;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"1.txt", "2.txt", "3.txt"}));
  EXPECT_EQ(names({"a", std::nullopt}), (std::vector<std::string>{"1.txt", "2.txt"}));
  EXPECT_EQ(names({"a", "alice"}), (std::vector<std::string>{"1.txt"}));
  EXPECT_EQ(names({std::nullopt, "alice"}), (std::vector<std::string>{"1.txt", "3.txt"}));
}

TEST_P(StoreContract, DeletingADocumentRemovesItsChunksFromEverything) {
  std::int64_t doc = add_document("c", "gone.txt", {"zebra crossing", "zebra stripes"});
  std::int64_t kept = add_document("c", "kept.txt", {"zebra kept"});
  std::vector<std::int64_t> chunk_ids;
  Result<std::vector<Chunk>> chunks = store_->document_chunks(doc);
  ASSERT_TRUE(chunks.ok());
  for (const Chunk& c : *chunks) chunk_ids.push_back(c.id);
  const float v[] = {1, 2};
  ASSERT_TRUE(store_->set_embeddings(std::vector<ChunkEmbedding>{{chunk_ids[0], v}}).ok());
  EXPECT_EQ(keyword_ids("c", "zebra").size(), 3u);

  Result<std::vector<std::int64_t>> removed = store_->delete_document(doc);
  ASSERT_TRUE(removed.ok()) << removed.status().message();
  EXPECT_EQ(*removed, chunk_ids);
  EXPECT_EQ(store_->get_document(doc).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->document_chunks(doc).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->get_chunks(chunk_ids)->empty());
  EXPECT_TRUE(store_->embedded_chunk_ids("c")->empty());
  std::vector<std::int64_t> left = keyword_ids("c", "zebra");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(store_->get_chunks(left)->at(0).document_id, kept);
  EXPECT_EQ(store_->delete_document(doc).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get_collection("c")->chunk_count, 1);
}

TEST_P(StoreContract, DeletingACollectionRemovesItsDocuments) {
  std::int64_t doc = add_document("c", "a.txt", {"walrus"});
  ASSERT_TRUE(store_->delete_collection("c").ok());
  EXPECT_EQ(store_->get_document(doc).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(keyword_ids("c", "walrus").empty());
  EXPECT_EQ(store_->delete_collection("c").code(), StatusCode::kNotFound);
}

TEST_P(StoreContract, ReplacingContentSwapsChunksAndResetsProgress) {
  std::int64_t doc = add_document("c", "v1.txt", {"old aardvark text"});
  std::vector<std::int64_t> old_ids = keyword_ids("c", "aardvark");
  ASSERT_EQ(old_ids.size(), 1u);
  const float v[] = {1};
  ASSERT_TRUE(store_->set_embeddings(std::vector<ChunkEmbedding>{{old_ids[0], v}}).ok());
  ASSERT_EQ(store_->get_document(doc)->chunks_done, 1);

  std::vector<NewChunk> chunks = {{0, "new bandicoot text", "", 0, 3}, {1, "more", "", 0, 1}};
  Result<ChunkChange> change =
      store_->replace_document_content(doc, {"v2.txt", "text", "V2", 99}, chunks);
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->removed_ids, old_ids);
  EXPECT_EQ(change->added_ids.size(), 2u);
  EXPECT_GT(change->added_ids[0], old_ids[0]);  // ids are never reused
  EXPECT_TRUE(keyword_ids("c", "aardvark").empty());
  EXPECT_EQ(keyword_ids("c", "bandicoot"), std::vector<std::int64_t>{change->added_ids[0]});
  Result<Document> got = store_->get_document(doc);
  EXPECT_EQ(got->content.name, "v2.txt");
  EXPECT_EQ(got->chunks_total, 2);
  EXPECT_EQ(got->chunks_done, 0);
  EXPECT_EQ(got->status, DocumentStatus::kQueued);
  EXPECT_EQ(store_->replace_document_content(12345, {}, chunks).status().code(),
            StatusCode::kNotFound);
}

TEST_P(StoreContract, EmbeddingsForDeletedChunksAreSkipped) {
  std::int64_t doc = add_document("c", "a.txt", {"one"});
  std::int64_t id = store_->document_chunks(doc)->at(0).id;
  ASSERT_TRUE(store_->delete_document(doc).ok());
  const float v[] = {1, 2, 3};
  Result<std::int64_t> stored = store_->set_embeddings(std::vector<ChunkEmbedding>{{id, v}});
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(*stored, 0);
  EXPECT_EQ(store_->set_embeddings(std::vector<ChunkEmbedding>{{id, {}}}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(StoreContract, KeywordSearchRanksWithinTheCollection) {
  add_document("bio", "a.txt",
               {"The mitochondria is the powerhouse of the cell. Mitochondria make ATP.",
                "Plants use photosynthesis.", "Cells divide by mitosis."});
  add_document("other", "b.txt", {"mitochondria in another collection"});
  Result<std::vector<KeywordHit>> hits = store_->keyword_search("bio", "mitochondria ATP", 10);
  ASSERT_TRUE(hits.ok()) << hits.status().message();
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_GT((*hits)[0].score, 0);
  Result<std::vector<Chunk>> chunk =
      store_->get_chunks(std::vector<std::int64_t>{(*hits)[0].chunk_id});
  EXPECT_EQ(chunk->at(0).collection, "bio");
  // Stemming: "dividing" finds "divide"; words are OR-ed, better matches first.
  EXPECT_EQ(keyword_ids("bio", "dividing").size(), 1u);
  hits = store_->keyword_search("bio", "plants photosynthesis mitosis", 10);
  ASSERT_EQ(hits->size(), 2u);
  EXPECT_GT((*hits)[0].score, (*hits)[1].score);
  EXPECT_EQ(store_->get_chunks(std::vector<std::int64_t>{(*hits)[0].chunk_id})->at(0).text,
            "Plants use photosynthesis.");
  EXPECT_EQ(keyword_ids("bio", "Part").size(), 3u);  // headings are indexed too
  EXPECT_EQ(store_->keyword_search("bio", "cells", 0)->size(), 0u);
}

TEST_P(StoreContract, HostileQueriesNeverFailOrInject) {
  add_document("c", "a.txt", {"photosynthesis happens in chloroplasts", "unrelated words here"});
  const std::vector<std::string> hostile = {"\"",
                                            "\"photosynthesis",
                                            "photosynthesis\"",
                                            "*",
                                            "photo*",
                                            "AND",
                                            "OR",
                                            "NOT",
                                            "photosynthesis AND",
                                            "NOT photosynthesis",
                                            "- photosynthesis",
                                            "-photosynthesis",
                                            "(photosynthesis",
                                            "photosynthesis)",
                                            "((())",
                                            "NEAR(photosynthesis chloroplasts, 1)",
                                            "text:photosynthesis",
                                            "heading : x",
                                            "^photosynthesis",
                                            "+photosynthesis",
                                            "{text}: x",
                                            "photosynthesis'; DROP TABLE chunks; --",
                                            "\\",
                                            "''",
                                            "\xff\xfe",
                                            "é*",
                                            "a\"b\"c",
                                            std::string(5000, 'x'),
                                            std::string(3, '\0') + "photosynthesis"};
  for (const std::string& q : hostile) {
    Result<std::vector<KeywordHit>> hits = store_->keyword_search("c", q, 10);
    EXPECT_TRUE(hits.ok()) << "query " << q << ": " << hits.status().message();
  }
  // Operators are words like any other: none removes or narrows the literal match.
  for (const char* q : {"NOT photosynthesis", "-photosynthesis", "(photosynthesis",
                        "photosynthesis'; DROP TABLE chunks; --", "text:photosynthesis"}) {
    EXPECT_EQ(keyword_ids("c", q).size(), 1u) << q;
  }
  EXPECT_TRUE(keyword_ids("c", "photo*").empty());  // no prefix operator
  EXPECT_TRUE(keyword_ids("c", "*").empty());
  EXPECT_EQ(store_->get_collection("c")->chunk_count, 2);  // the table is still there
  EXPECT_EQ(fts_query("a\"b OR c* (d)"), "\"a\" OR \"b\" OR \"OR\" OR \"c\" OR \"d\"");
  EXPECT_EQ(fts_query("Cell cell CELL"), "\"Cell\"");
  EXPECT_EQ(fts_query("*** \"\" ()"), "");
}

TEST_P(StoreContract, SessionsBelongToTheirOwner) {
  Result<Session> alice = store_->ensure_session({"s1", "alice", "Biology homework", 0});
  ASSERT_TRUE(alice.ok()) << alice.status().message();
  ASSERT_TRUE(store_->append_message("alice", "s1", {"user", "what is osmosis", "", 0}).ok());

  EXPECT_EQ(store_->get_session("bob", "s1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->list_messages("bob", "s1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->append_message("bob", "s1", {"user", "hi", "", 0}).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->delete_session("bob", "s1").code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->list_sessions("bob", "", 10)->empty());
  EXPECT_TRUE(store_->list_sessions("bob", "osmosis", 10)->empty());
  EXPECT_TRUE(store_->list_sessions("", "osmosis", 10)->empty());  // anonymous is an owner too

  // Bob's "s1" is his own session; Alice's stays intact.
  Result<Session> bob = store_->ensure_session({"s1", "bob", "", 0});
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->message_count, 0);
  ASSERT_TRUE(store_->append_message("bob", "s1", {"user", "bob's secret", "", 0}).ok());
  Result<std::vector<Message>> messages = store_->list_messages("alice", "s1");
  ASSERT_TRUE(messages.ok());
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].content, "what is osmosis");
  ASSERT_TRUE(store_->delete_session("bob", "s1").ok());
  EXPECT_EQ(store_->list_messages("alice", "s1")->size(), 1u);
  EXPECT_EQ(store_->get_session("alice", "s1")->title, "Biology homework");
}

TEST_P(StoreContract, MessagesKeepTheirOrderAndSources) {
  Result<Session> s = store_->ensure_session({"", "k", "", 0});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->id.size(), 32u);  // generated
  for (int i = 0; i < 5; ++i) {
    NewMessage m{i % 2 == 0 ? "user" : "assistant", "message " + std::to_string(i),
                 i % 2 == 0 ? "" : "[{\"document\":\"a.md\"}]", 0};
    ASSERT_TRUE(store_->append_message("k", s->id, m).ok());
  }
  Result<std::vector<Message>> all = store_->list_messages("k", s->id);
  ASSERT_EQ(all->size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ((*all)[i].content, "message " + std::to_string(i));
  EXPECT_EQ((*all)[1].role, "assistant");
  EXPECT_EQ((*all)[1].sources_json, "[{\"document\":\"a.md\"}]");
  EXPECT_LT((*all)[0].id, (*all)[1].id);
  Result<std::vector<Message>> last = store_->list_messages("k", s->id, 2);
  ASSERT_EQ(last->size(), 2u);
  EXPECT_EQ((*last)[0].content, "message 3");
  EXPECT_EQ((*last)[1].content, "message 4");
  EXPECT_EQ(store_->get_session("k", s->id)->message_count, 5);
  EXPECT_EQ(store_->append_message("k", s->id, {"", "no role", "", 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ensure_session({"bad id/../x", "k", "", 0}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(StoreContract, SessionSearchFindsMessagesOfTheOwner) {
  ASSERT_TRUE(store_->ensure_session({"bio", "k", "Bio", 0}).ok());
  ASSERT_TRUE(store_->ensure_session({"art", "k", "Art", 0}).ok());
  ASSERT_TRUE(
      store_->append_message("k", "bio", {"user", "explain osmosis in plant cells", "", 0}).ok());
  ASSERT_TRUE(
      store_->append_message("k", "art", {"user", "who painted the Mona Lisa", "", 0}).ok());
  ASSERT_TRUE(store_->append_message("k", "art", {"assistant", "Leonardo; cells? no", "", 0}).ok());

  Result<std::vector<SessionMatch>> found = store_->list_sessions("k", "osmosis", 10);
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].session.id, "bio");
  EXPECT_NE((*found)[0].snippet.find("[osmosis]"), std::string::npos) << (*found)[0].snippet;
  found = store_->list_sessions("k", "cells", 10);
  EXPECT_EQ(found->size(), 2u);  // each session once
  EXPECT_TRUE(store_->list_sessions("k", "\"(*", 10)->empty());

  Result<std::vector<SessionMatch>> recent = store_->list_sessions("k", "", 10);
  ASSERT_EQ(recent->size(), 2u);
  EXPECT_EQ((*recent)[0].session.id, "art");  // updated last
  EXPECT_EQ((*recent)[0].session.message_count, 2);
  EXPECT_EQ(store_->list_sessions("k", "", 1)->size(), 1u);
}

TEST_P(StoreContract, ExpiredSessionsDisappearAndArePurged) {
  std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  ASSERT_TRUE(store_->ensure_session({"old", "k", "", now + 3'600'000}).ok());
  ASSERT_TRUE(store_->ensure_session({"forever", "k", "", 0}).ok());
  ASSERT_TRUE(store_->append_message("k", "old", {"user", "remember the alamo", "", 0}).ok());
  // Expiry in the past: invisible at once, swept later.
  ASSERT_TRUE(store_->append_message("k", "old", {"user", "x", "", now - 1}).ok());
  EXPECT_EQ(store_->get_session("k", "old").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->list_messages("k", "old").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->list_sessions("k", "alamo", 10)->empty());
  EXPECT_EQ(store_->list_sessions("k", "", 10)->size(), 1u);

  Result<std::int64_t> purged = store_->purge_expired(now);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(*store_->purge_expired(now), 0);
  EXPECT_TRUE(store_->get_session("k", "forever").ok());
  // The id is free again and starts empty.
  Result<Session> again = store_->ensure_session({"old", "k", "", 0});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->message_count, 0);
}

TEST_P(StoreContract, DataSurvivesReopening) {
  std::int64_t doc = add_document("c", "a.txt", {"persistent platypus"});
  ASSERT_TRUE(store_->ensure_session({"s", "k", "t", 0}).ok());
  ASSERT_TRUE(store_->append_message("k", "s", {"user", "hello", "", 0}).ok());
  store_ = reopen();
  ASSERT_TRUE(store_);
  EXPECT_EQ(store_->get_document(doc)->content.name, "a.txt");
  EXPECT_EQ(keyword_ids("c", "platypus").size(), 1u);
  EXPECT_EQ(store_->list_messages("k", "s")->at(0).content, "hello");
  // New ids continue after the old ones.
  EXPECT_GT(add_document("c", "b.txt", {"x"}), doc);
}

TEST_P(StoreContract, AnAppendedMessageSurvivesKillNine) {
  // The child opens the store itself (no connection crosses fork), appends, and is
  // killed without closing anything.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<std::unique_ptr<Store>> s = GetParam().open(dir_.path());
    if (!s.ok()) _exit(2);
    if (!(*s)->ensure_session({"crash", "k", "", 0}).ok()) _exit(3);
    if (!(*s)->append_message("k", "crash", {"user", "answered before the crash", "", 0}).ok()) {
      _exit(4);
    }
    kill(getpid(), SIGKILL);
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  store_ = reopen();
  ASSERT_TRUE(store_);
  Result<std::vector<Message>> messages = store_->list_messages("k", "crash");
  ASSERT_TRUE(messages.ok()) << messages.status().message();
  ASSERT_EQ(messages->size(), 1u);
  EXPECT_EQ((*messages)[0].content, "answered before the crash");
}

TEST_P(StoreContract, ConcurrentWritersAndReaders) {
  add_document("c", "a.txt", {"shared searchable text"});
  constexpr int kThreads = 4;
  constexpr int kMessages = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string id = "t" + std::to_string(t);
      if (!store_->ensure_session({id, "k", "", 0}).ok()) ++failures;
      for (int i = 0; i < kMessages; ++i) {
        if (!store_->append_message("k", id, {"user", "m" + std::to_string(i), "", 0}).ok()) {
          ++failures;
        }
        Result<std::vector<KeywordHit>> hits = store_->keyword_search("c", "searchable", 5);
        if (!hits.ok() || hits->size() != 1) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(store_->list_messages("k", "t" + std::to_string(t))->size(),
              static_cast<size_t>(kMessages));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::ValuesIn(kBackends),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return std::string(info.param.name);
                         });

// --- SQLite specifics ---

TEST(SqliteStore, CreatesTheFileInWalModeWithASchemaVersion) {
  TempDir dir;
  ASSERT_TRUE(open_sqlite(dir.path() / "nested").ok());
  std::filesystem::path file = dir.path() / "nested" / "knowledge.sqlite3";
  ASSERT_TRUE(std::filesystem::exists(file));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  auto scalar = [&](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    std::string value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return value;
  };
  EXPECT_EQ(scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(scalar("PRAGMA user_version"), "1");
  sqlite3_close(db);
}

TEST(SqliteStore, RefusesANewerSchemaAndForeignFiles) {
  TempDir dir;
  std::filesystem::path file = dir.path() / "knowledge.sqlite3";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(open_sqlite(dir.path()).status().code(), StatusCode::kUnsupported);

  std::filesystem::remove(file);
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE mine(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(open_sqlite(dir.path()).status().code(), StatusCode::kUnsupported);

  std::filesystem::remove(file);
  std::ofstream(file) << std::string(8192, 'g');
  Result<std::unique_ptr<Store>> garbage = open_sqlite(dir.path());
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), StatusCode::kCorrupt) << garbage.status().message();
}

}  // namespace
}  // namespace infera::store
