-- Identity: the replay cache of self-issued tokens, the credentials this participant holds, and those it issued.

-- One row per accepted token (issuer and jti) until the token expires; a second use of a jti is a replay.
CREATE TABLE token_ids (
    token_key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX token_ids_expiry ON token_ids (expires_at);

-- Verifiable credentials held by this participant (JWTs), shown to verifiers on request.
CREATE TABLE held_credentials (
    id TEXT PRIMARY KEY,
    types TEXT NOT NULL,
    issuer TEXT NOT NULL,
    jwt TEXT NOT NULL,
    valid_until BIGINT,
    imported_at BIGINT NOT NULL
);

-- Verifiable credentials this participant issued as an issuer; status_index is the credential's bit in the
-- revocation status list.
CREATE TABLE issued_credentials (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    types TEXT NOT NULL,
    status_index BIGINT NOT NULL UNIQUE,
    revoked BOOLEAN NOT NULL,
    issued_at BIGINT NOT NULL,
    revoked_at BIGINT
);
