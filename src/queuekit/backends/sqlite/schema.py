"""The SQLite schema and connection settings of the embedded backend.

Tables:

* ``queues``: one row per (topic, consumer group), numbered by ``queue_id`` (a topic's
  default group is created by its first publish). Deliveries carry the small integer, not
  the two names: their index entries stay short and compare fast.
* ``deliveries``: one row per (message, group) not yet settled by that group, holding the
  message itself. A message published to a topic of three groups is stored three times,
  as RabbitMQ stores it once per queue: consuming then reads, leases and deletes one row,
  with no join and no "was that the last group?" check. ``seq`` is AUTOINCREMENT so it is
  never reused: a stale consumer settling an old ``seq`` can never touch a newer delivery.
  A message's copies share its publish position: ``message_seq`` is the seq of its first
  copy (NULL on that copy itself), which orders what a new group inherits.
  ``visible_at`` is when the row can next be claimed: 0 when it is ready now, the ready
  time (``not_before``, a retry delay) while it waits, the lease expiry while leased.
  Three partial indexes split the rows by state, so each step of a message's life touches
  one index entry or two: ready rows in claim order, waiting rows by due time, leased rows
  by lease expiry. A claim first moves the due waiting rows and expired leases into the
  ready state, then leases the head of the claim order, which never holds rows that are
  leased or waiting.
* ``consumers``: open subscriptions and until when they were last seen (for stats).
* ``dead_letters``: dead-lettered messages with their ``x-dlq-*`` headers.

Version 1 kept messages in a table of their own and one delivery row per group pointing at
them; version 2 had two indexes over every delivery. :data:`MIGRATIONS` moves such a file to
the current layout in one transaction.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    queue_id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (topic, grp)
);

CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    id TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers BLOB,
    key TEXT,
    not_before REAL,
    created_at REAL NOT NULL,
    message_seq INTEGER
);
-- Ready rows in claim order: highest priority first, then publish order.
CREATE INDEX IF NOT EXISTS deliveries_ready
    ON deliveries (queue_id, priority DESC, seq) WHERE lease_owner IS NULL AND visible_at = 0;
-- Waiting rows (delayed publishes, retries) by due time.
CREATE INDEX IF NOT EXISTS deliveries_waiting
    ON deliveries (queue_id, visible_at) WHERE lease_owner IS NULL AND visible_at > 0;
-- Leased rows by lease expiry: a claim's rows, and the leases of consumers that died.
CREATE INDEX IF NOT EXISTS deliveries_leased
    ON deliveries (queue_id, visible_at) WHERE lease_owner IS NOT NULL;

CREATE TABLE IF NOT EXISTS consumers (
    owner TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    seen_until REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    dl_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers BLOB NOT NULL,
    key TEXT,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_topic ON dead_letters (topic, dl_seq);
"""

# From each older version to the next: statements run in order, in the migrating transaction,
# before SCHEMA creates whatever is still missing.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Version 1: ``messages`` + ``groups`` + ``deliveries`` keyed by names.
    1: (
        "DROP INDEX IF EXISTS messages_by_topic",
        "DROP INDEX IF EXISTS deliveries_claim_order",
        "DROP INDEX IF EXISTS deliveries_due",
        "CREATE TABLE queues (queue_id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
        " grp TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (topic, grp))",
        "INSERT INTO queues (topic, grp, created_at)"
        " SELECT topic, grp, created_at FROM groups ORDER BY topic, grp",
        "ALTER TABLE deliveries RENAME TO deliveries_v1",
        "CREATE TABLE deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " queue_id INTEGER NOT NULL, priority INTEGER NOT NULL, visible_at REAL NOT NULL,"
        " attempts INTEGER NOT NULL, lease_owner TEXT, id TEXT NOT NULL, payload BLOB NOT NULL,"
        " headers BLOB, key TEXT, not_before REAL, created_at REAL NOT NULL,"
        " message_seq INTEGER)",
        "INSERT INTO deliveries (queue_id, priority, visible_at, attempts, lease_owner, id,"
        " payload, headers, key, not_before, created_at)"
        " SELECT q.queue_id, m.priority, d.visible_at, d.attempts, d.lease_owner, m.id,"
        " m.payload, m.headers, m.key, m.not_before, m.created_at"
        " FROM deliveries_v1 AS d JOIN messages AS m ON m.seq = d.seq"
        " JOIN queues AS q ON q.topic = d.topic AND q.grp = d.grp ORDER BY d.seq, q.queue_id",
        # Copies of one v1 message were inserted one after another: link each to its first.
        "UPDATE deliveries SET message_seq = (SELECT min(f.seq) FROM deliveries AS f"
        " WHERE f.id = deliveries.id AND f.created_at = deliveries.created_at)"
        " WHERE seq > (SELECT min(f.seq) FROM deliveries AS f"
        " WHERE f.id = deliveries.id AND f.created_at = deliveries.created_at)",
        "DROP TABLE deliveries_v1",
        "DROP TABLE groups",
        "DROP TABLE messages",
    ),
    # Version 2: the same tables, two indexes over every delivery (SCHEMA adds the new ones).
    2: (
        "DROP INDEX IF EXISTS deliveries_claim_order",
        "DROP INDEX IF EXISTS deliveries_due",
    ),
}

# Durability is chosen per connection (see SqliteStore): synchronous=FULL syncs the WAL
# on commit, which "publish returns once the message is durable" needs; NORMAL (synced at
# checkpoints) survives a crash of the process but may lose the last commits on power loss,
# which for claims and settlements only means a redelivery, as at-least-once allows.
SYNC_DURABLE = "PRAGMA synchronous = FULL"
SYNC_RELAXED = "PRAGMA synchronous = NORMAL"
# The publishing connection only appends at the tails of the deliveries table and its two
# indexes: a few pages; a full-size cache there only added to a worker's peak RSS.
DURABLE_PRAGMAS = (SYNC_DURABLE, "PRAGMA cache_size = -512")
RELAXED_PRAGMAS = (SYNC_RELAXED,)

CONNECTION_PRAGMAS = (  # after queuekit.sqlite_wal.enable_wal
    "PRAGMA foreign_keys = OFF",
    "PRAGMA temp_store = MEMORY",
    # 1 MiB, half SQLite's default: a queue's working set is the head and tail of a few
    # b-trees. 16 MiB added 5 MiB to a worker's peak RSS and nothing to its throughput;
    # 2 MiB -> 1 MiB took 1.1 MiB off it, with no throughput change measured.
    "PRAGMA cache_size = -1000",
    # Checkpoints run in the background (see checkpoint.py); this is only the backstop.
    "PRAGMA wal_autocheckpoint = 10000",
    "PRAGMA journal_size_limit = 67108864",
)
