"""The SQLite schema and connection settings of the embedded backend.

Tables:

* ``messages``: one row per published message, kept while a delivery references it.
  ``seq`` is AUTOINCREMENT so it is never reused: a stale consumer settling an old ``seq``
  can never touch a newer message.
* ``groups``: the consumer groups of each topic (a topic's default group is created by its
  first publish).
* ``deliveries``: one row per (message, group) not yet settled by that group. ``visible_at``
  is when the row can next be claimed: the ready time (``not_before`` or a retry delay) while
  unleased, the lease expiry while leased. One column makes both "claimable now" and "when
  is the next one due" single index range checks.
* ``consumers``: open subscriptions and until when they were last seen (for stats).
* ``dead_letters``: dead-lettered messages with their ``x-dlq-*`` headers.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

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
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic, seq);

CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER NOT NULL,
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    priority INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    PRIMARY KEY (seq, grp)
) WITHOUT ROWID;
-- Claim order: highest priority first, then publish order. visible_at is covered, so a
-- claim never reads the table itself.
CREATE INDEX IF NOT EXISTS deliveries_claim_order
    ON deliveries (topic, grp, priority DESC, seq, visible_at);
-- "Is anything due, and when is the next one?" in O(log n), for idle polling and stats.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (topic, grp, visible_at);

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

# Durability is chosen per transaction (see SqliteStore._write): synchronous=FULL syncs the WAL
# on commit, which "publish returns once the message is durable" needs; NORMAL (synced at
# checkpoints) survives a crash of the process but may lose the last commits on power loss,
# which for claims and settlements only means a redelivery, as at-least-once allows.
SYNC_DURABLE = "PRAGMA synchronous = FULL"
SYNC_RELAXED = "PRAGMA synchronous = NORMAL"

CONNECTION_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    SYNC_DURABLE,
    "PRAGMA foreign_keys = OFF",
    "PRAGMA temp_store = MEMORY",
    # SQLite's default 2 MiB: a queue's working set is the head and tail of a few b-trees;
    # 16 MiB added 5 MiB to a worker's peak RSS and nothing to its throughput.
    "PRAGMA cache_size = -2000",
    "PRAGMA journal_size_limit = 67108864",
)
