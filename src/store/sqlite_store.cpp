// SQLite backend of store::Store. One writer connection behind a mutex (SQLite allows one
// writer at a time anyway) and a small pool of reader connections, which WAL lets read
// while the writer commits. Chunk writes commit with synchronous=NORMAL (durable at the
// next checkpoint; a crash of the process loses nothing, a power cut may lose the last
// batches, which re-indexing recreates); message appends switch the writer to FULL for
// their commit, so the WAL is fsynced before append_message returns.
#include <sqlite3.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <unordered_set>
#include <utility>

#include "store/sqlite_db.h"
#include "store/store.h"

namespace infera::store {

namespace {

using sqlite::Connection;
using sqlite::Statement;
using sqlite::Transaction;

constexpr std::int64_t kSchemaVersion = 1;
constexpr const char* kFileName = "knowledge.sqlite3";
constexpr int kMaxReaders = 8;
constexpr std::size_t kMaxQueryWords = 64;
constexpr std::size_t kMaxWordBytes = 256;
constexpr std::int64_t kEmbeddingPage = 1024;

// Tables, the two full-text indexes (external content, kept in step by triggers, so the
// text is stored once) and indexes. Foreign keys cascade: collection -> documents ->
// chunks, session -> messages.
constexpr const char* kSchema = R"sql(
CREATE TABLE collections(
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  embedding_model TEXT NOT NULL,
  dims INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE documents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  owner TEXT NOT NULL,
  name TEXT NOT NULL,
  format TEXT NOT NULL,
  title TEXT NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('queued', 'embedding', 'ready', 'failed')),
  chunks_total INTEGER NOT NULL DEFAULT 0,
  chunks_done INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE INDEX documents_by_collection ON documents(collection, owner);
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  collection TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  text TEXT NOT NULL,
  heading TEXT NOT NULL,
  page INTEGER NOT NULL,
  token_count INTEGER NOT NULL,
  embedding BLOB);
CREATE INDEX chunks_by_document ON chunks(document_id, ordinal);
CREATE INDEX chunks_by_collection ON chunks(collection);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks',
  content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
  INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
    VALUES ('delete', old.id, old.text, old.heading);
END;
CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text, heading ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
    VALUES ('delete', old.id, old.text, old.heading);
  INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
END;
CREATE TABLE sessions(
  key INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  owner TEXT NOT NULL,
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  UNIQUE(owner, id));
CREATE INDEX sessions_by_owner ON sessions(owner, updated_at);
CREATE INDEX sessions_by_expiry ON sessions(expires_at) WHERE expires_at > 0;
CREATE TABLE messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_key INTEGER NOT NULL REFERENCES sessions(key) ON DELETE CASCADE,
  role TEXT NOT NULL,
  content TEXT NOT NULL,
  sources TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE INDEX messages_by_session ON messages(session_key, id);
CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
)sql";

constexpr const char* kDocumentColumns =
    "id, collection, owner, name, format, title, status, chunks_total, chunks_done, error, "
    "bytes, created_at, updated_at";

constexpr const char* kChunkSelect =
    "SELECT c.id, c.document_id, d.name, c.collection, c.ordinal, c.text, c.heading, c.page, "
    "c.token_count, c.embedding IS NOT NULL FROM chunks c JOIN documents d ON d.id = "
    "c.document_id ";

// A session whose expiry has passed is gone for every reader, swept or not.
constexpr const char* kLive = "(s.expires_at = 0 OR s.expires_at > ?9)";

constexpr const char* kSessionSelect =
    "SELECT s.key, s.id, s.owner, s.title, s.created_at, s.updated_at, s.expires_at, "
    "(SELECT count(*) FROM messages m WHERE m.session_key = s.key) FROM sessions s ";

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_word_byte(unsigned char c) { return c >= 0x80 || std::isalnum(c) != 0; }

// Embeddings are stored as float32 little-endian whatever the host.
std::vector<std::uint8_t> encode_vector(std::span<const float> vector) {
  std::vector<std::uint8_t> bytes(vector.size() * sizeof(float));
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(bytes.data(), vector.data(), bytes.size());
  } else {
    for (size_t i = 0; i < vector.size(); ++i) {
      auto bits = std::bit_cast<std::uint32_t>(vector[i]);
      for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<std::uint8_t>(bits >> (8 * b));
    }
  }
  return bytes;
}

bool decode_vector(std::span<const std::uint8_t> bytes, std::vector<float>& out) {
  if (bytes.empty() || bytes.size() % sizeof(float) != 0) return false;
  out.resize(bytes.size() / sizeof(float));
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      std::uint32_t bits = 0;
      for (int b = 0; b < 4; ++b) bits |= std::uint32_t{bytes[i * 4 + b]} << (8 * b);
      out[i] = std::bit_cast<float>(bits);
    }
  }
  return true;
}

// Session ids travel in URLs and logs: short, printable, no separators that need escaping.
bool valid_session_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == ':';
  });
}

std::string random_session_id() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   (std::uint64_t(std::random_device{}()) << 32));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  std::uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) {
    id[i] = kHex[(a >> (4 * i)) & 15];
    id[16 + i] = kHex[(b >> (4 * i)) & 15];
  }
  return id;
}

Document read_document(const Statement& row) {
  Document d;
  d.id = row.int64(0);
  d.collection = row.text(1);
  d.owner = row.text(2);
  d.content.name = row.text(3);
  d.content.format = row.text(4);
  d.content.title = row.text(5);
  d.status = parse_status(row.text(6)).value_or(DocumentStatus::kFailed);
  d.chunks_total = row.int64(7);
  d.chunks_done = row.int64(8);
  d.error = row.text(9);
  d.content.bytes = row.int64(10);
  d.created_at_ms = row.int64(11);
  d.updated_at_ms = row.int64(12);
  return d;
}

Chunk read_chunk(const Statement& row) {
  Chunk c;
  c.id = row.int64(0);
  c.document_id = row.int64(1);
  c.document_name = row.text(2);
  c.collection = row.text(3);
  c.ordinal = static_cast<int>(row.int64(4));
  c.text = row.text(5);
  c.heading = row.text(6);
  c.page = static_cast<int>(row.int64(7));
  c.token_count = static_cast<int>(row.int64(8));
  c.has_embedding = row.int64(9) != 0;
  return c;
}

// Columns of kSessionSelect, after the internal key.
Session read_session(const Statement& row) {
  Session s;
  s.id = row.text(1);
  s.owner = row.text(2);
  s.title = row.text(3);
  s.created_at_ms = row.int64(4);
  s.updated_at_ms = row.int64(5);
  s.expires_at_ms = row.int64(6);
  s.message_count = row.int64(7);
  return s;
}

Collection read_collection(const Statement& row) {
  Collection c;
  c.name = row.text(0);
  c.owner = row.text(1);
  c.embedding_model = row.text(2);
  c.dims = static_cast<int>(row.int64(3));
  c.created_at_ms = row.int64(4);
  c.document_count = row.int64(5);
  c.chunk_count = row.int64(6);
  return c;
}

constexpr const char* kCollectionSelect =
    "SELECT c.name, c.owner, c.embedding_model, c.dims, c.created_at, "
    "(SELECT count(*) FROM documents d WHERE d.collection = c.name), "
    "(SELECT count(*) FROM chunks k WHERE k.collection = c.name) FROM collections c ";

#define INFERA_RETURN_IF_ERROR(expr)   \
  do {                                 \
    Status status_ = (expr);           \
    if (!status_.ok()) return status_; \
  } while (false)

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, std::unique_ptr<Connection> writer)
      : path_(std::move(path)), writer_(std::move(writer)) {}

  Status create_schema();

  Result<Collection> ensure_collection(const NewCollection& collection) override;
  Result<Collection> get_collection(std::string_view name) override;
  Result<std::vector<Collection>> list_collections() override;
  Status delete_collection(std::string_view name) override;

  Result<Document> create_document(const NewDocument& document) override;
  Result<Document> get_document(std::int64_t id) override;
  Result<std::vector<Document>> list_documents(const DocumentFilter& filter) override;
  Status set_document_status(std::int64_t id, DocumentStatus status,
                             std::string_view error) override;
  Result<ChunkChange> replace_document_content(std::int64_t id, const DocumentContent& content,
                                               std::span<const NewChunk> chunks) override;
  Result<std::vector<std::int64_t>> delete_document(std::int64_t id) override;

  Result<std::vector<Chunk>> document_chunks(std::int64_t document_id) override;
  Result<std::vector<Chunk>> get_chunks(std::span<const std::int64_t> ids) override;
  Result<std::int64_t> set_embeddings(std::span<const ChunkEmbedding> embeddings) override;
  Status for_each_embedding(std::string_view collection, const EmbeddingSink& sink) override;
  Status for_each_embedding(std::span<const std::int64_t> chunk_ids,
                            const EmbeddingSink& sink) override;
  Result<std::vector<std::int64_t>> embedded_chunk_ids(std::string_view collection) override;
  Result<std::vector<KeywordHit>> keyword_search(std::string_view collection,
                                                 std::string_view query, std::size_t k) override;

  Result<Session> ensure_session(const NewSession& session) override;
  Result<Session> get_session(std::string_view owner, std::string_view id) override;
  Result<std::int64_t> append_message(std::string_view owner, std::string_view session_id,
                                      const NewMessage& message) override;
  Result<std::vector<Message>> list_messages(std::string_view owner, std::string_view session_id,
                                             std::size_t last_n) override;
  Result<std::vector<SessionMatch>> list_sessions(std::string_view owner, std::string_view query,
                                                  std::size_t limit) override;
  Status delete_session(std::string_view owner, std::string_view id) override;
  Result<std::int64_t> purge_expired(std::int64_t now_ms) override;

 private:
  // A reader connection lent to one call; returned to the pool on destruction.
  class Reader {
   public:
    Reader(SqliteStore& store, std::unique_ptr<Connection> connection)
        : store_(&store), connection_(std::move(connection)) {}
    Reader(Reader&& other) noexcept = default;
    ~Reader() {
      if (connection_) store_->release_reader(std::move(connection_));
    }
    Connection& operator*() { return *connection_; }
    Connection* operator->() { return connection_.get(); }

   private:
    SqliteStore* store_;
    std::unique_ptr<Connection> connection_;
  };

  Result<Reader> reader();
  void release_reader(std::unique_ptr<Connection> connection);

  // REQUIRES: write_mutex_ held (used inside write transactions).
  Result<Collection> collection_on(Connection& db, std::string_view name);
  // The live session's internal key, or NotFound.
  Result<std::int64_t> session_key(Connection& db, std::string_view owner, std::string_view id,
                                   std::int64_t now);
  Result<Session> session_by_key(Connection& db, std::int64_t key);

  std::string path_;
  std::mutex write_mutex_;
  std::unique_ptr<Connection> writer_;  // guarded by write_mutex_

  std::mutex readers_mutex_;
  std::condition_variable reader_returned_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;  // guarded by readers_mutex_
  int open_readers_ = 0;                                   // guarded by readers_mutex_
};

Status SqliteStore::create_schema() {
  Connection& db = *writer_;
  INFERA_RETURN_IF_ERROR(db.exec("PRAGMA journal_mode=WAL"));
  INFERA_RETURN_IF_ERROR(db.exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON"));
  Result<std::int64_t> version = db.query_int64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return Status::Unsupported(path_ + ": schema version " + std::to_string(*version) +
                               " is newer than this build's " + std::to_string(kSchemaVersion) +
                               "; upgrade infera or use another --data-dir");
  }
  if (*version == kSchemaVersion) return Status::Ok();
  Result<std::int64_t> tables = db.query_int64("SELECT count(*) FROM sqlite_master");
  if (!tables.ok()) return tables.status();
  if (*tables != 0) {
    return Status::Unsupported(path_ +
                               ": not an infera knowledge store (it has tables but no "
                               "schema version)");
  }
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  // Another process may have created the schema while this one waited for the lock.
  Result<std::int64_t> again = db.query_int64("PRAGMA user_version");
  if (!again.ok()) return again.status();
  if (*again == kSchemaVersion) return txn.commit();
  INFERA_RETURN_IF_ERROR(db.exec(kSchema));
  INFERA_RETURN_IF_ERROR(
      db.exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str()));
  return txn.commit();
}

Result<SqliteStore::Reader> SqliteStore::reader() {
  std::unique_lock lock(readers_mutex_);
  reader_returned_.wait(lock,
                        [&] { return !idle_readers_.empty() || open_readers_ < kMaxReaders; });
  if (!idle_readers_.empty()) {
    auto connection = std::move(idle_readers_.back());
    idle_readers_.pop_back();
    return Reader(*this, std::move(connection));
  }
  ++open_readers_;
  lock.unlock();
  auto connection = Connection::open(path_, false);
  if (!connection.ok()) {
    std::lock_guard relock(readers_mutex_);
    --open_readers_;
    reader_returned_.notify_one();
    return connection.status();
  }
  return Reader(*this, std::move(connection).value());
}

void SqliteStore::release_reader(std::unique_ptr<Connection> connection) {
  {
    std::lock_guard lock(readers_mutex_);
    idle_readers_.push_back(std::move(connection));
  }
  reader_returned_.notify_one();
}

// --- collections ---

Result<Collection> SqliteStore::collection_on(Connection& db, std::string_view name) {
  Result<Statement> q = db.prepare(std::string(kCollectionSelect) + "WHERE c.name = ?1");
  if (!q.ok()) return q.status();
  q->bind_text(1, name);
  Result<bool> row = q->step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("collection '" + std::string(name) + "' does not exist");
  return read_collection(*q);
}

Result<Collection> SqliteStore::ensure_collection(const NewCollection& c) {
  if (c.name.empty()) return Status::InvalidArgument("a collection needs a name");
  if (c.dims < 0) return Status::InvalidArgument("collection dims must not be negative");
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  Result<Collection> existing = collection_on(db, c.name);
  if (existing.ok()) {
    const Collection& e = *existing;
    if (!c.embedding_model.empty() && !e.embedding_model.empty() &&
        c.embedding_model != e.embedding_model) {
      return Status::InvalidArgument("collection '" + c.name + "' holds embeddings of model '" +
                                     e.embedding_model + "', not '" + c.embedding_model + "'");
    }
    if (c.dims != 0 && e.dims != 0 && c.dims != e.dims) {
      return Status::InvalidArgument("collection '" + c.name + "' holds " + std::to_string(e.dims) +
                                     "-dimensional embeddings, not " + std::to_string(c.dims));
    }
    if ((e.embedding_model.empty() && !c.embedding_model.empty()) || (e.dims == 0 && c.dims != 0)) {
      Result<Statement> u = db.prepare(
          "UPDATE collections SET embedding_model = CASE WHEN embedding_model = '' THEN ?2 ELSE "
          "embedding_model END, dims = CASE WHEN dims = 0 THEN ?3 ELSE dims END WHERE name = ?1");
      if (!u.ok()) return u.status();
      u->bind_text(1, c.name).bind_text(2, c.embedding_model).bind_int(3, c.dims);
      INFERA_RETURN_IF_ERROR(u->run());
    }
  } else if (existing.status().code() == StatusCode::kNotFound) {
    Result<Statement> ins = db.prepare(
        "INSERT INTO collections(name, owner, embedding_model, dims, created_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!ins.ok()) return ins.status();
    ins->bind_text(1, c.name).bind_text(2, c.owner).bind_text(3, c.embedding_model);
    ins->bind_int(4, c.dims).bind_int(5, now_ms());
    INFERA_RETURN_IF_ERROR(ins->run());
  } else {
    return existing.status();
  }
  Result<Collection> result = collection_on(db, c.name);
  if (!result.ok()) return result.status();
  INFERA_RETURN_IF_ERROR(txn.commit());
  return result;
}

Result<Collection> SqliteStore::get_collection(std::string_view name) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  return collection_on(**r, name);
}

Result<std::vector<Collection>> SqliteStore::list_collections() {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q = (*r)->prepare(std::string(kCollectionSelect) + "ORDER BY c.name");
  if (!q.ok()) return q.status();
  std::vector<Collection> out;
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(read_collection(*q));
  }
  return out;
}

Status SqliteStore::delete_collection(std::string_view name) {
  std::lock_guard lock(write_mutex_);
  Result<Statement> q = writer_->prepare("DELETE FROM collections WHERE name = ?1");
  if (!q.ok()) return q.status();
  q->bind_text(1, name);
  INFERA_RETURN_IF_ERROR(q->run());
  if (writer_->changes() == 0) {
    return Status::NotFound("collection '" + std::string(name) + "' does not exist");
  }
  return Status::Ok();
}

// --- documents ---

Result<Document> SqliteStore::create_document(const NewDocument& doc) {
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  Result<Collection> collection = collection_on(db, doc.collection);
  if (!collection.ok()) return collection.status();
  std::int64_t now = now_ms();
  Result<Statement> ins = db.prepare(
      "INSERT INTO documents(collection, owner, name, format, title, status, bytes, created_at, "
      "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7)");
  if (!ins.ok()) return ins.status();
  ins->bind_text(1, doc.collection).bind_text(2, doc.owner).bind_text(3, doc.content.name);
  ins->bind_text(4, doc.content.format).bind_text(5, doc.content.title);
  ins->bind_int(6, doc.content.bytes).bind_int(7, now);
  INFERA_RETURN_IF_ERROR(ins->run());
  Document d;
  d.id = db.last_insert_rowid();
  d.collection = doc.collection;
  d.owner = doc.owner;
  d.content = doc.content;
  d.created_at_ms = d.updated_at_ms = now;
  INFERA_RETURN_IF_ERROR(txn.commit());
  return d;
}

Result<Document> SqliteStore::get_document(std::int64_t id) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q =
      (*r)->prepare(std::string("SELECT ") + kDocumentColumns + " FROM documents WHERE id = ?1");
  if (!q.ok()) return q.status();
  q->bind_int(1, id);
  Result<bool> row = q->step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("document " + std::to_string(id) + " does not exist");
  return read_document(*q);
}

Result<std::vector<Document>> SqliteStore::list_documents(const DocumentFilter& filter) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q = (*r)->prepare(
      std::string("SELECT ") + kDocumentColumns +
      " FROM documents WHERE (?1 IS NULL OR collection = ?1) AND (?2 IS NULL OR owner = ?2) "
      "ORDER BY id");
  if (!q.ok()) return q.status();
  if (filter.collection) q->bind_text(1, *filter.collection);
  if (filter.owner) q->bind_text(2, *filter.owner);
  std::vector<Document> out;
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(read_document(*q));
  }
  return out;
}

Status SqliteStore::set_document_status(std::int64_t id, DocumentStatus status,
                                        std::string_view error) {
  std::lock_guard lock(write_mutex_);
  Result<Statement> q = writer_->prepare(
      "UPDATE documents SET status = ?2, error = ?3, updated_at = ?4 WHERE id = ?1");
  if (!q.ok()) return q.status();
  q->bind_int(1, id).bind_text(2, status_name(status));
  q->bind_text(3, status == DocumentStatus::kFailed ? error : std::string_view());
  q->bind_int(4, now_ms());
  INFERA_RETURN_IF_ERROR(q->run());
  if (writer_->changes() == 0) {
    return Status::NotFound("document " + std::to_string(id) + " does not exist");
  }
  return Status::Ok();
}

Result<ChunkChange> SqliteStore::replace_document_content(std::int64_t id,
                                                          const DocumentContent& content,
                                                          std::span<const NewChunk> chunks) {
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  std::string collection;
  {
    Result<Statement> q = db.prepare("SELECT collection FROM documents WHERE id = ?1");
    if (!q.ok()) return q.status();
    q->bind_int(1, id);
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::NotFound("document " + std::to_string(id) + " does not exist");
    collection = q->text(0);
  }
  ChunkChange change;
  {
    Result<Statement> q = db.prepare("SELECT id FROM chunks WHERE document_id = ?1 ORDER BY id");
    if (!q.ok()) return q.status();
    q->bind_int(1, id);
    while (true) {
      Result<bool> row = q->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      change.removed_ids.push_back(q->int64(0));
    }
  }
  {
    Result<Statement> del = db.prepare("DELETE FROM chunks WHERE document_id = ?1");
    if (!del.ok()) return del.status();
    del->bind_int(1, id);
    INFERA_RETURN_IF_ERROR(del->run());
  }
  Result<Statement> ins = db.prepare(
      "INSERT INTO chunks(document_id, collection, ordinal, text, heading, page, token_count) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!ins.ok()) return ins.status();
  change.added_ids.reserve(chunks.size());
  for (const NewChunk& c : chunks) {
    ins->reset();
    ins->bind_int(1, id).bind_text(2, collection).bind_int(3, c.ordinal).bind_text(4, c.text);
    ins->bind_text(5, c.heading).bind_int(6, c.page).bind_int(7, c.token_count);
    INFERA_RETURN_IF_ERROR(ins->run());
    change.added_ids.push_back(db.last_insert_rowid());
  }
  Result<Statement> upd = db.prepare(
      "UPDATE documents SET name = ?2, format = ?3, title = ?4, bytes = ?5, status = 'queued', "
      "chunks_total = ?6, chunks_done = 0, error = '', updated_at = ?7 WHERE id = ?1");
  if (!upd.ok()) return upd.status();
  upd->bind_int(1, id).bind_text(2, content.name).bind_text(3, content.format);
  upd->bind_text(4, content.title).bind_int(5, content.bytes);
  upd->bind_int(6, static_cast<std::int64_t>(chunks.size())).bind_int(7, now_ms());
  INFERA_RETURN_IF_ERROR(upd->run());
  INFERA_RETURN_IF_ERROR(txn.commit());
  return change;
}

Result<std::vector<std::int64_t>> SqliteStore::delete_document(std::int64_t id) {
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  std::vector<std::int64_t> removed;
  {
    Result<Statement> q = db.prepare("SELECT id FROM chunks WHERE document_id = ?1 ORDER BY id");
    if (!q.ok()) return q.status();
    q->bind_int(1, id);
    while (true) {
      Result<bool> row = q->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      removed.push_back(q->int64(0));
    }
  }
  Result<Statement> del = db.prepare("DELETE FROM documents WHERE id = ?1");
  if (!del.ok()) return del.status();
  del->bind_int(1, id);
  INFERA_RETURN_IF_ERROR(del->run());
  if (db.changes() == 0)
    return Status::NotFound("document " + std::to_string(id) + " does not exist");
  INFERA_RETURN_IF_ERROR(txn.commit());
  return removed;
}

// --- chunks ---

Result<std::vector<Chunk>> SqliteStore::document_chunks(std::int64_t document_id) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q =
      (*r)->prepare(std::string(kChunkSelect) + "WHERE c.document_id = ?1 ORDER BY c.ordinal");
  if (!q.ok()) return q.status();
  q->bind_int(1, document_id);
  std::vector<Chunk> out;
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(read_chunk(*q));
  }
  if (out.empty()) {
    Result<Statement> exists = (*r)->prepare("SELECT 1 FROM documents WHERE id = ?1");
    if (!exists.ok()) return exists.status();
    exists->bind_int(1, document_id);
    Result<bool> row = exists->step();
    if (!row.ok()) return row.status();
    if (!*row) {
      return Status::NotFound("document " + std::to_string(document_id) + " does not exist");
    }
  }
  return out;
}

Result<std::vector<Chunk>> SqliteStore::get_chunks(std::span<const std::int64_t> ids) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q = (*r)->prepare(std::string(kChunkSelect) + "WHERE c.id = ?1");
  if (!q.ok()) return q.status();
  std::vector<Chunk> out;
  out.reserve(ids.size());
  for (std::int64_t id : ids) {
    q->reset();
    q->bind_int(1, id);
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (*row) out.push_back(read_chunk(*q));
  }
  return out;
}

Result<std::int64_t> SqliteStore::set_embeddings(std::span<const ChunkEmbedding> embeddings) {
  for (const ChunkEmbedding& e : embeddings) {
    if (e.vector.empty()) {
      return Status::InvalidArgument("empty embedding for chunk " + std::to_string(e.chunk_id));
    }
  }
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  Result<Statement> upd =
      db.prepare("UPDATE chunks SET embedding = ?2 WHERE id = ?1 RETURNING document_id");
  if (!upd.ok()) return upd.status();
  std::int64_t stored = 0;
  std::unordered_set<std::int64_t> documents;
  for (const ChunkEmbedding& e : embeddings) {
    upd->reset();
    upd->bind_int(1, e.chunk_id).bind_blob(2, encode_vector(e.vector));
    Result<bool> row = upd->step();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    ++stored;
    documents.insert(upd->int64(0));
    INFERA_RETURN_IF_ERROR(upd->run());
  }
  Result<Statement> progress = db.prepare(
      "UPDATE documents SET chunks_done = (SELECT count(*) FROM chunks WHERE document_id = ?1 "
      "AND embedding IS NOT NULL), updated_at = ?2 WHERE id = ?1");
  if (!progress.ok()) return progress.status();
  std::int64_t now = now_ms();
  for (std::int64_t doc : documents) {
    progress->reset();
    progress->bind_int(1, doc).bind_int(2, now);
    INFERA_RETURN_IF_ERROR(progress->run());
  }
  INFERA_RETURN_IF_ERROR(txn.commit());
  return stored;
}

Status SqliteStore::for_each_embedding(std::string_view collection, const EmbeddingSink& sink) {
  // Paged by id so that no read transaction stays open across the whole collection (a
  // long reader would stop WAL checkpoints while the caller builds its index).
  std::vector<float> vector;
  std::int64_t after = 0;
  while (true) {
    Result<Reader> r = reader();
    if (!r.ok()) return r.status();
    Result<Statement> q = (*r)->prepare(
        "SELECT id, embedding FROM chunks WHERE collection = ?1 AND id > ?2 AND embedding IS NOT "
        "NULL ORDER BY id LIMIT ?3");
    if (!q.ok()) return q.status();
    q->bind_text(1, collection).bind_int(2, after).bind_int(3, kEmbeddingPage);
    std::int64_t rows = 0;
    while (true) {
      Result<bool> row = q->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      ++rows;
      after = q->int64(0);
      if (!decode_vector(q->blob(1), vector)) {
        return Status::Corrupt(path_ + ": chunk " + std::to_string(after) +
                               " has a damaged embedding");
      }
      sink(after, vector);
    }
    if (rows < kEmbeddingPage) return Status::Ok();
  }
}

Status SqliteStore::for_each_embedding(std::span<const std::int64_t> chunk_ids,
                                       const EmbeddingSink& sink) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q =
      (*r)->prepare("SELECT embedding FROM chunks WHERE id = ?1 AND embedding IS NOT NULL");
  if (!q.ok()) return q.status();
  std::vector<float> vector;
  for (std::int64_t id : chunk_ids) {
    q->reset();
    q->bind_int(1, id);
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    if (!decode_vector(q->blob(0), vector)) {
      return Status::Corrupt(path_ + ": chunk " + std::to_string(id) + " has a damaged embedding");
    }
    sink(id, vector);
  }
  return Status::Ok();
}

Result<std::vector<std::int64_t>> SqliteStore::embedded_chunk_ids(std::string_view collection) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q = (*r)->prepare(
      "SELECT id FROM chunks WHERE collection = ?1 AND embedding IS NOT NULL ORDER BY id");
  if (!q.ok()) return q.status();
  q->bind_text(1, collection);
  std::vector<std::int64_t> out;
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(q->int64(0));
  }
  return out;
}

Result<std::vector<KeywordHit>> SqliteStore::keyword_search(std::string_view collection,
                                                            std::string_view query, std::size_t k) {
  std::string match = fts_query(query);
  std::vector<KeywordHit> out;
  if (match.empty() || k == 0) return out;
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  // Text counts twice as much as the heading, which many chunks of a section share.
  Result<Statement> q = (*r)->prepare(
      "SELECT c.id, bm25(chunks_fts, 1.0, 0.5) AS score FROM chunks_fts JOIN chunks c ON c.id = "
      "chunks_fts.rowid WHERE chunks_fts MATCH ?1 AND c.collection = ?2 ORDER BY score LIMIT ?3");
  if (!q.ok()) return q.status();
  q->bind_text(1, match).bind_text(2, collection).bind_int(3, static_cast<std::int64_t>(k));
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back({q->int64(0), -q->real(1)});  // SQLite's bm25() is lower-is-better
  }
  return out;
}

// --- sessions ---

Result<std::int64_t> SqliteStore::session_key(Connection& db, std::string_view owner,
                                              std::string_view id, std::int64_t now) {
  Result<Statement> q = db.prepare(
      std::string("SELECT s.key FROM sessions s WHERE s.owner = ?1 AND s.id = ?2 AND ") + kLive);
  if (!q.ok()) return q.status();
  q->bind_text(1, owner).bind_text(2, id).bind_int(9, now);
  Result<bool> row = q->step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("session '" + std::string(id) + "' does not exist");
  return q->int64(0);
}

Result<Session> SqliteStore::session_by_key(Connection& db, std::int64_t key) {
  Result<Statement> q = db.prepare(std::string(kSessionSelect) + "WHERE s.key = ?1");
  if (!q.ok()) return q.status();
  q->bind_int(1, key);
  Result<bool> row = q->step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("session does not exist");
  return read_session(*q);
}

Result<Session> SqliteStore::ensure_session(const NewSession& session) {
  std::string id = session.id.empty() ? random_session_id() : session.id;
  if (!valid_session_id(id)) {
    return Status::InvalidArgument(
        "a session id has 1 to 128 letters, digits or '-', '_', '.', ':'");
  }
  std::int64_t now = now_ms();
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  // An expired session not yet swept is gone: the id starts a new one.
  {
    Result<Statement> del = db.prepare(
        "DELETE FROM sessions WHERE owner = ?1 AND id = ?2 AND expires_at > 0 AND expires_at <= "
        "?3");
    if (!del.ok()) return del.status();
    del->bind_text(1, session.owner).bind_text(2, id).bind_int(3, now);
    INFERA_RETURN_IF_ERROR(del->run());
  }
  Result<std::int64_t> key = session_key(db, session.owner, id, now);
  if (key.ok()) {
    Result<Statement> upd = db.prepare(
        "UPDATE sessions SET title = CASE WHEN title = '' THEN ?2 ELSE title END, expires_at = "
        "CASE WHEN ?3 > 0 THEN ?3 ELSE expires_at END WHERE key = ?1");
    if (!upd.ok()) return upd.status();
    upd->bind_int(1, *key).bind_text(2, session.title).bind_int(3, session.expires_at_ms);
    INFERA_RETURN_IF_ERROR(upd->run());
  } else if (key.status().code() == StatusCode::kNotFound) {
    Result<Statement> ins = db.prepare(
        "INSERT INTO sessions(id, owner, title, created_at, updated_at, expires_at) "
        "VALUES (?1, ?2, ?3, ?4, ?4, ?5)");
    if (!ins.ok()) return ins.status();
    ins->bind_text(1, id).bind_text(2, session.owner).bind_text(3, session.title);
    ins->bind_int(4, now).bind_int(5, session.expires_at_ms);
    INFERA_RETURN_IF_ERROR(ins->run());
    key = db.last_insert_rowid();
  } else {
    return key.status();
  }
  Result<Session> result = session_by_key(db, *key);
  if (!result.ok()) return result.status();
  INFERA_RETURN_IF_ERROR(txn.commit());
  return result;
}

Result<Session> SqliteStore::get_session(std::string_view owner, std::string_view id) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Result<Statement> q =
      (*r)->prepare(std::string(kSessionSelect) + "WHERE s.owner = ?1 AND s.id = ?2 AND " + kLive);
  if (!q.ok()) return q.status();
  q->bind_text(1, owner).bind_text(2, id).bind_int(9, now_ms());
  Result<bool> row = q->step();
  if (!row.ok()) return row.status();
  if (!*row) return Status::NotFound("session '" + std::string(id) + "' does not exist");
  return read_session(*q);
}

Result<std::int64_t> SqliteStore::append_message(std::string_view owner,
                                                 std::string_view session_id,
                                                 const NewMessage& message) {
  if (message.role.empty()) return Status::InvalidArgument("a message needs a role");
  std::int64_t now = now_ms();
  std::lock_guard lock(write_mutex_);
  Connection& db = *writer_;
  // In WAL mode FULL fsyncs the WAL at commit; NORMAL (the connection's default) would
  // leave the commit to the next checkpoint's fsync.
  INFERA_RETURN_IF_ERROR(db.exec("PRAGMA synchronous=FULL"));
  struct RestoreNormal {
    Connection& db;
    ~RestoreNormal() { (void)db.exec("PRAGMA synchronous=NORMAL"); }
  } restore{db};
  Transaction txn(db);
  INFERA_RETURN_IF_ERROR(txn.begin());
  Result<std::int64_t> key = session_key(db, owner, session_id, now);
  if (!key.ok()) return key.status();
  Result<Statement> ins = db.prepare(
      "INSERT INTO messages(session_key, role, content, sources, created_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!ins.ok()) return ins.status();
  ins->bind_int(1, *key).bind_text(2, message.role).bind_text(3, message.content);
  ins->bind_text(4, message.sources_json).bind_int(5, now);
  INFERA_RETURN_IF_ERROR(ins->run());
  std::int64_t id = db.last_insert_rowid();
  Result<Statement> upd = db.prepare(
      "UPDATE sessions SET updated_at = ?2, expires_at = CASE WHEN ?3 > 0 THEN ?3 ELSE "
      "expires_at END WHERE key = ?1");
  if (!upd.ok()) return upd.status();
  upd->bind_int(1, *key).bind_int(2, now).bind_int(3, message.session_expires_at_ms);
  INFERA_RETURN_IF_ERROR(upd->run());
  INFERA_RETURN_IF_ERROR(txn.commit());
  return id;
}

Result<std::vector<Message>> SqliteStore::list_messages(std::string_view owner,
                                                        std::string_view session_id,
                                                        std::size_t last_n) {
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Connection& db = **r;
  // One snapshot for the ownership check and the rows.
  INFERA_RETURN_IF_ERROR(db.exec("BEGIN"));
  struct EndRead {
    Connection& db;
    ~EndRead() { (void)db.exec("COMMIT"); }
  } end{db};
  Result<std::int64_t> key = session_key(db, owner, session_id, now_ms());
  if (!key.ok()) return key.status();
  Result<Statement> q = db.prepare(
      "SELECT id, role, content, sources, created_at FROM messages WHERE session_key = ?1 "
      "ORDER BY id DESC LIMIT ?2");
  if (!q.ok()) return q.status();
  q->bind_int(1, *key).bind_int(2, last_n == 0 ? -1 : static_cast<std::int64_t>(last_n));
  std::vector<Message> out;
  while (true) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Message m;
    m.id = q->int64(0);
    m.session_id = std::string(session_id);
    m.role = q->text(1);
    m.content = q->text(2);
    m.sources_json = q->text(3);
    m.created_at_ms = q->int64(4);
    out.push_back(std::move(m));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

Result<std::vector<SessionMatch>> SqliteStore::list_sessions(std::string_view owner,
                                                             std::string_view query,
                                                             std::size_t limit) {
  std::vector<SessionMatch> out;
  if (limit == 0) return out;
  Result<Reader> r = reader();
  if (!r.ok()) return r.status();
  Connection& db = **r;
  std::int64_t now = now_ms();
  if (query.empty()) {
    Result<Statement> q = db.prepare(std::string(kSessionSelect) + "WHERE s.owner = ?1 AND " +
                                     kLive + " ORDER BY s.updated_at DESC, s.key DESC LIMIT ?2");
    if (!q.ok()) return q.status();
    q->bind_text(1, owner).bind_int(2, static_cast<std::int64_t>(limit)).bind_int(9, now);
    while (true) {
      Result<bool> row = q->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      out.push_back({read_session(*q), ""});
    }
    return out;
  }
  std::string match = fts_query(query);
  if (match.empty()) return out;
  INFERA_RETURN_IF_ERROR(db.exec("BEGIN"));
  struct EndRead {
    Connection& db;
    ~EndRead() { (void)db.exec("COMMIT"); }
  } end{db};
  // Best messages first; the first message seen of each session is its best. Bounded so a
  // common word over a long history cannot make one request scan it all.
  Result<Statement> q = db.prepare(
      std::string("SELECT s.key, snippet(messages_fts, 0, '[', ']', '...', 16) FROM messages_fts "
                  "JOIN messages m ON m.id = messages_fts.rowid JOIN sessions s ON s.key = "
                  "m.session_key WHERE messages_fts MATCH ?1 AND s.owner = ?2 AND ") +
      kLive + " ORDER BY bm25(messages_fts) LIMIT ?3");
  if (!q.ok()) return q.status();
  q->bind_text(1, match).bind_text(2, owner).bind_int(9, now);
  q->bind_int(3, static_cast<std::int64_t>(std::min<std::size_t>(limit * 50, 5000)));
  std::vector<std::pair<std::int64_t, std::string>> best;
  std::unordered_set<std::int64_t> seen;
  while (best.size() < limit) {
    Result<bool> row = q->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (seen.insert(q->int64(0)).second) best.emplace_back(q->int64(0), q->text(1));
  }
  q->reset();
  for (auto& [key, snippet] : best) {
    Result<Session> s = session_by_key(db, key);
    if (!s.ok()) return s.status();
    out.push_back({std::move(s).value(), std::move(snippet)});
  }
  return out;
}

Status SqliteStore::delete_session(std::string_view owner, std::string_view id) {
  std::lock_guard lock(write_mutex_);
  Result<Statement> q = writer_->prepare("DELETE FROM sessions WHERE owner = ?1 AND id = ?2");
  if (!q.ok()) return q.status();
  q->bind_text(1, owner).bind_text(2, id);
  INFERA_RETURN_IF_ERROR(q->run());
  if (writer_->changes() == 0) {
    return Status::NotFound("session '" + std::string(id) + "' does not exist");
  }
  return Status::Ok();
}

Result<std::int64_t> SqliteStore::purge_expired(std::int64_t now) {
  std::lock_guard lock(write_mutex_);
  Result<Statement> q =
      writer_->prepare("DELETE FROM sessions WHERE expires_at > 0 AND expires_at <= ?1");
  if (!q.ok()) return q.status();
  q->bind_int(1, now);
  INFERA_RETURN_IF_ERROR(q->run());
  return static_cast<std::int64_t>(writer_->changes());
}

}  // namespace

std::string_view status_name(DocumentStatus status) {
  switch (status) {
    case DocumentStatus::kQueued:
      return "queued";
    case DocumentStatus::kEmbedding:
      return "embedding";
    case DocumentStatus::kReady:
      return "ready";
    case DocumentStatus::kFailed:
      return "failed";
  }
  return "failed";
}

std::optional<DocumentStatus> parse_status(std::string_view name) {
  for (auto s : {DocumentStatus::kQueued, DocumentStatus::kEmbedding, DocumentStatus::kReady,
                 DocumentStatus::kFailed}) {
    if (status_name(s) == name) return s;
  }
  return std::nullopt;
}

std::string fts_query(std::string_view text) {
  std::vector<std::string> words;
  std::unordered_set<std::string> seen;
  size_t i = 0;
  while (i < text.size() && words.size() < kMaxQueryWords) {
    while (i < text.size() && !is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    size_t start = i;
    while (i < text.size() && is_word_byte(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > kMaxWordBytes) continue;
    std::string word(text.substr(start, i - start));
    std::string folded = word;
    for (char& c : folded) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (seen.insert(folded).second) words.push_back(std::move(word));
  }
  // A quoted string is an FTS5 string literal: its words are matched as a phrase, and
  // nothing inside it is an operator. The words hold no '"' (it is not a word byte).
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += " OR ";
    out += '"';
    out += w;
    out += '"';
  }
  return out;
}

Result<std::unique_ptr<Store>> open_sqlite(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IoError("data dir " + dir.string() + ": " + ec.message());
  std::string path = (dir / kFileName).string();
  auto writer = Connection::open(path, true);
  if (!writer.ok()) return writer.status();
  auto store = std::make_unique<SqliteStore>(path, std::move(writer).value());
  Status s = store->create_schema();
  if (!s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace infera::store
