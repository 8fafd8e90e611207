-- Idempotency keys of management calls that start something (negotiations, transfers, EDRs, jobs, credentials).
-- A key is claimed in the transaction that creates the resource, so a retry never makes a second one; the first
-- answer is kept once it is known.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,                 -- the call: method and route
    key TEXT NOT NULL,                   -- the client's Idempotency-Key
    digest TEXT NOT NULL,                -- SHA-256 of the request body: a key reused for another request is refused
    resource TEXT NOT NULL,              -- what the call created
    status BIGINT,                       -- the first answer's status and body, once sent
    answer TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
