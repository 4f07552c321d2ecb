"""The SQLite schema and connection settings of the embedded backend.

Tables:

* ``messages``: one row per published message, kept while a delivery references it.
  ``seq`` is AUTOINCREMENT so it is never reused: a stale consumer settling an old ``seq``
  can never touch a newer message.
* ``queues``: one row per (topic, consumer group), numbered by ``queue_id`` (a topic's
  default group is created by its first publish). Deliveries carry the small integer, not
  the two names: their b-tree entries stay short and compare fast.
* ``deliveries``: one row per (message, group) not yet settled by that group. Its primary
  key *is* the claim order (highest priority first, then publish order), so a claim walks
  the table itself and updating a lease rewrites one row in place, with no claim-order
  index to maintain. ``visible_at`` is when the row can next be claimed: the ready time
  (``not_before`` or a retry delay) while unleased, the lease expiry while leased; the
  ``deliveries_due`` index answers "when is the next one due" and finds a claim's rows.
* ``consumers``: open subscriptions and until when they were last seen (for stats).
* ``dead_letters``: dead-lettered messages with their ``x-dlq-*`` headers.

Version 1 stored ``topic`` and ``grp`` in every delivery and kept a second, claim-order
index; :data:`MIGRATIONS` moves such a file to the current layout in one transaction.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers BLOB,
    key TEXT,
    priority INTEGER NOT NULL,
    not_before REAL,
    created_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS queues (
    queue_id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (topic, grp)
);

CREATE TABLE IF NOT EXISTS deliveries (
    queue_id INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    PRIMARY KEY (queue_id, priority DESC, seq)
) WITHOUT ROWID;
-- "Is anything due, and when is the next one?" in O(log n), and a claim's rows.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (queue_id, visible_at);

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

# From version 1 (``groups`` + ``deliveries`` keyed by names): statements run in order, in
# the migrating transaction, before SCHEMA creates whatever is still missing.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "DROP INDEX IF EXISTS messages_by_topic",
        "DROP INDEX IF EXISTS deliveries_claim_order",
        "DROP INDEX IF EXISTS deliveries_due",
        "CREATE TABLE queues (queue_id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
        " grp TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (topic, grp))",
        "INSERT INTO queues (topic, grp, created_at)"
        " SELECT topic, grp, created_at FROM groups ORDER BY topic, grp",
        "ALTER TABLE deliveries RENAME TO deliveries_v1",
        "CREATE TABLE deliveries (queue_id INTEGER NOT NULL, priority INTEGER NOT NULL,"
        " seq INTEGER NOT NULL, visible_at REAL NOT NULL, attempts INTEGER NOT NULL,"
        " lease_owner TEXT, PRIMARY KEY (queue_id, priority DESC, seq)) WITHOUT ROWID",
        "INSERT INTO deliveries (queue_id, priority, seq, visible_at, attempts, lease_owner)"
        " SELECT q.queue_id, d.priority, d.seq, d.visible_at, d.attempts, d.lease_owner"
        " FROM deliveries_v1 AS d JOIN queues AS q ON q.topic = d.topic AND q.grp = d.grp",
        "DROP TABLE deliveries_v1",
        "DROP TABLE groups",
    ),
}

# Durability is chosen per connection (see SqliteStore): synchronous=FULL syncs the WAL
# on commit, which "publish returns once the message is durable" needs; NORMAL (synced at
# checkpoints) survives a crash of the process but may lose the last commits on power loss,
# which for claims and settlements only means a redelivery, as at-least-once allows.
SYNC_DURABLE = "PRAGMA synchronous = FULL"
SYNC_RELAXED = "PRAGMA synchronous = NORMAL"

CONNECTION_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA temp_store = MEMORY",
    # SQLite's default 2 MiB: a queue's working set is the head and tail of a few b-trees;
    # 16 MiB added 5 MiB to a worker's peak RSS and nothing to its throughput.
    "PRAGMA cache_size = -2000",
    "PRAGMA journal_size_limit = 67108864",
)
