-- SQLite keeps a table whose primary key is not `INTEGER PRIMARY KEY` as two B-trees: the rows by rowid and a
-- separate index on the key. Every append to the audit log and every token id wrote both. Here each of the tables
-- written on every DSP message gets one B-tree for its key (decision 0018):
-- - audit entries and audit nodes: the key becomes the rowid (`INTEGER PRIMARY KEY`);
-- - token ids and receipts owed: the rows are stored in their key's order (`WITHOUT ROWID`).
-- The rows are copied as they are; the indexes are created again.

CREATE TABLE audit_entries_by_seq (
    seq INTEGER PRIMARY KEY,             -- the leaf index
    at BIGINT NOT NULL,                  -- milliseconds since the epoch (also inside the entry)
    type TEXT NOT NULL,
    agreement_id TEXT,
    participant TEXT,
    dataset TEXT,
    entry TEXT NOT NULL,                 -- canonical JSON (RFC 8785): the leaf's exact bytes
    root BLOB NOT NULL                   -- the tree's root once this entry was appended
);
INSERT INTO audit_entries_by_seq (seq, at, type, agreement_id, participant, dataset, entry, root)
    SELECT seq, at, type, agreement_id, participant, dataset, entry, root FROM audit_entries ORDER BY seq;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_by_seq RENAME TO audit_entries;
CREATE INDEX audit_entries_by_agreement ON audit_entries (agreement_id);
CREATE INDEX audit_entries_by_participant ON audit_entries (participant);
CREATE INDEX audit_entries_by_dataset ON audit_entries (dataset);
CREATE INDEX audit_entries_by_type ON audit_entries (type, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (at);

CREATE TABLE audit_nodes_by_id (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
INSERT INTO audit_nodes_by_id (id, hash) SELECT id, hash FROM audit_nodes ORDER BY id;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_id RENAME TO audit_nodes;

CREATE TABLE token_ids_by_key (
    token_key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO token_ids_by_key (token_key, expires_at) SELECT token_key, expires_at FROM token_ids;
DROP TABLE token_ids;
ALTER TABLE token_ids_by_key RENAME TO token_ids;
CREATE INDEX token_ids_expiry ON token_ids (expires_at);

CREATE TABLE audit_receipts_out_by_agreement (
    agreement_id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT
) WITHOUT ROWID;
INSERT INTO audit_receipts_out_by_agreement (agreement_id, peer, attempts, next_at, delivered_at)
    SELECT agreement_id, peer, attempts, next_at, delivered_at FROM audit_receipts_out;
DROP TABLE audit_receipts_out;
ALTER TABLE audit_receipts_out_by_agreement RENAME TO audit_receipts_out;
CREATE INDEX audit_receipts_out_due ON audit_receipts_out (next_at) WHERE delivered_at IS NULL;
