-- The tamper-evident audit log: an RFC 9162 Merkle tree over canonical JSON entries, appended in the transaction of the
-- change each entry records.

-- One row: the log's size and the perfect blocks that make up its tree (the frontier). Appending locks this row, so
-- entries get consecutive sequence numbers whatever the number of writers.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
INSERT INTO audit_head (id, size, frontier) VALUES (1, 0, ''::bytea);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,              -- the leaf index
    at BIGINT NOT NULL,                  -- milliseconds since the epoch (also inside the entry)
    type TEXT NOT NULL,
    agreement_id TEXT,
    participant TEXT,
    dataset TEXT,
    entry TEXT NOT NULL,                 -- canonical JSON (RFC 8785): the leaf's exact bytes
    root BYTEA NOT NULL                   -- the tree's root once this entry was appended
);
CREATE INDEX audit_entries_by_agreement ON audit_entries (agreement_id);
CREATE INDEX audit_entries_by_participant ON audit_entries (participant);
CREATE INDEX audit_entries_by_dataset ON audit_entries (dataset);
CREATE INDEX audit_entries_by_type ON audit_entries (type, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (at);

-- The hash of every perfect subtree (leaves included), keyed by its index in the in-order layout.
CREATE TABLE audit_nodes (
    id BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

-- Tree heads this connector signed (every one it ever handed out).
CREATE TABLE audit_tree_heads (
    size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    signed_at BIGINT NOT NULL,
    jws TEXT NOT NULL
);

-- Receipts peers sent us for their log entry of an agreement we share.
CREATE TABLE audit_receipts (
    agreement_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    receipt TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (agreement_id, issuer)
);

-- Receipts we owe peers: one per finalized agreement, until the peer took it.
CREATE TABLE audit_receipts_out (
    agreement_id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX audit_receipts_out_due ON audit_receipts_out (next_at) WHERE delivered_at IS NULL;

-- Peers' tree heads we witnessed: each consistent with the one before, countersigned by us; or the evidence of a
-- split view or rewritten history.
CREATE TABLE audit_witnessed (
    peer TEXT NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    tree_head TEXT NOT NULL,             -- the peer's signed tree head
    cosignature TEXT,                    -- ours over it; NULL when it was inconsistent
    problem TEXT,                        -- what was wrong, if anything
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (peer, size, seen_at)
);
