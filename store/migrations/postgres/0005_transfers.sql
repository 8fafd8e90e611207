-- Transfer processes (both roles): the same shape as negotiations, so that one outbox dispatcher serves both.
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,                 -- our process id (providerPid or consumerPid)
    role TEXT NOT NULL,                  -- 'provider' | 'consumer'
    state TEXT NOT NULL,                 -- DSP state
    peer_pid TEXT,                       -- the counter-party's process id, once known
    counter_party_id TEXT NOT NULL,
    counter_party_address TEXT NOT NULL, -- where messages to the peer go (its DSP base or callback address)
    body TEXT NOT NULL,                  -- format, data address, hold, decision, errors, history (JSON)
    last_received TEXT,                  -- digest of the last message applied (idempotence)
    last_answer TEXT,                    -- the answer given to it
    agreement_id TEXT,                   -- the agreement the transfer runs under
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    out_url TEXT,
    out_message TEXT,
    out_final BIGINT NOT NULL DEFAULT 0,
    out_attempts BIGINT NOT NULL DEFAULT 0,
    out_next_at BIGINT,
    out_lease BIGINT,
    out_seq BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX transfers_by_peer ON transfers (role, counter_party_id, peer_pid);
CREATE INDEX transfers_by_agreement ON transfers (agreement_id);
CREATE INDEX transfers_by_state ON transfers (state);
CREATE INDEX transfers_outgoing ON transfers (out_next_at) WHERE out_message IS NOT NULL;

-- How much each agreement has been used through the data plane (for `count` constraints and the audit log).
CREATE TABLE agreement_usage (
    agreement_id TEXT PRIMARY KEY,
    pulls BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
