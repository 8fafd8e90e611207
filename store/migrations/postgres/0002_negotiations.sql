-- Contract negotiations (both roles), their outgoing messages (outbox) and the agreements they produce.
CREATE TABLE negotiations (
    id TEXT PRIMARY KEY,                 -- our process id (providerPid or consumerPid)
    role TEXT NOT NULL,                  -- 'provider' | 'consumer'
    state TEXT NOT NULL,                 -- DSP state
    peer_pid TEXT,                       -- the counter-party's process id, once known
    counter_party_id TEXT NOT NULL,
    counter_party_address TEXT NOT NULL, -- where messages to the peer go (its DSP base or callback address)
    body TEXT NOT NULL,                  -- offers, agreement, hold, decision trace, errors (JSON)
    last_received TEXT,                  -- digest of the last message applied (idempotence)
    last_answer TEXT,                    -- the answer given to it
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX negotiations_by_peer ON negotiations (role, counter_party_id, peer_pid);
CREATE INDEX negotiations_by_state ON negotiations (state);

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    negotiation_id TEXT NOT NULL,
    url TEXT NOT NULL,
    message TEXT NOT NULL,
    final_notice BIGINT NOT NULL,       -- 1: a last termination notice, sent once and never followed up
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
CREATE INDEX outbox_by_negotiation ON outbox (negotiation_id, id);

CREATE TABLE agreements (
    id TEXT PRIMARY KEY,
    negotiation_id TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    consumer_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    signed_at BIGINT NOT NULL
);
CREATE INDEX agreements_by_negotiation ON agreements (negotiation_id);
