-- Named management keys with roles. The key itself is never stored: its SHA-256 is.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,                 -- the key's id, as audit entries name it
    name TEXT NOT NULL,                  -- what the operator calls it
    role TEXT NOT NULL,                  -- 'operator' | 'steward' | 'approver' | 'auditor' | 'metrics' | 'reader'
    hash TEXT NOT NULL UNIQUE,           -- SHA-256 (hex) of the key
    created_at BIGINT NOT NULL,          -- ms
    created_by TEXT NOT NULL,            -- the principal that made it (JSON)
    rotated_at BIGINT NOT NULL,          -- when the key value last changed (ms)
    revoked_at BIGINT NOT NULL           -- ms; 0 while valid
);

-- Apps' access tokens: a local agreement between this provider and one app for some datasets and actions. Tokens are
-- stored hashed; what each token may do (datasets with the usage policy fixed at issuance, actions, purpose, expiry,
-- rate limit, origins) is its body.
CREATE TABLE app_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,                  -- the app
    hash TEXT NOT NULL UNIQUE,           -- SHA-256 (hex) of the token
    body TEXT NOT NULL,                  -- JSON: datasets, policies, actions, purpose, rate, origins
    expires_at BIGINT NOT NULL,          -- ms; 0: no expiry
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,            -- the principal that issued it (JSON)
    revoked_at BIGINT NOT NULL,          -- ms; 0 while valid
    requests BIGINT NOT NULL,            -- answered uses
    rows_read BIGINT NOT NULL,           -- table rows sent
    bytes_read BIGINT NOT NULL,          -- bytes sent
    last_used_at BIGINT NOT NULL         -- ms; 0: never
);

-- Datasets waiting for a second key's approval before they appear in the catalogue (four eyes), and the decisions.
CREATE TABLE publications (
    asset_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,                 -- 'pending' | 'approved' | 'rejected'
    requested_at BIGINT NOT NULL,        -- ms
    requested_by TEXT NOT NULL,          -- the principal that created (or changed) the dataset (JSON)
    decided_at BIGINT NOT NULL,          -- ms; 0 while pending
    decided_by TEXT NOT NULL,            -- the principal that decided (JSON; '' while pending)
    reason TEXT NOT NULL                 -- the decider's reason ('' if none)
);
CREATE INDEX publications_by_state ON publications (state, requested_at);
