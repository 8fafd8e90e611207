-- The peer network: every connector this one knows, how it learned of it and whether it answered lately.
-- Seeds and operator-added peers are pinned (kept when silent); learned peers age out.
CREATE TABLE peers (
    did TEXT PRIMARY KEY,
    address TEXT NOT NULL,               -- the peer's versioned DSP base ('' until verified)
    source TEXT NOT NULL,                -- 'seed' | 'manual' | 'learned'
    status TEXT NOT NULL,                -- 'unverified' | 'live' | 'unreachable' | 'incompatible'
    detail TEXT NOT NULL,                -- the last error, or the versions an incompatible peer offers
    first_seen BIGINT NOT NULL,          -- when this connector first heard of it (ms)
    last_seen BIGINT NOT NULL,           -- when it last answered (ms; 0: never)
    last_attempt BIGINT NOT NULL,        -- when it was last contacted (ms; 0: never)
    failures BIGINT NOT NULL             -- failed contacts since the last success
);
