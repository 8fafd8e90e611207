-- Compute-to-data jobs, both roles. A provider's job is admitted under an agreement (its count is the job budget);
-- a consumer's job is the orchestration across sites.
CREATE TABLE compute_jobs (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,                  -- 'provider' | 'consumer'
    peer_job_id TEXT,                    -- provider: the consumer's job id (idempotent submission)
    counter_party_id TEXT,               -- provider: the consumer
    agreement_id TEXT,                   -- provider: the agreement it runs under
    transfer_id TEXT,                    -- provider: the compute transfer it was submitted on
    template TEXT NOT NULL,
    status TEXT NOT NULL,                -- 'running' | 'open' | 'completed' | 'failed'
    rounds BIGINT NOT NULL DEFAULT 0,
    body TEXT NOT NULL,                  -- parameters, decision, progress, per-site results, result (JSON)
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX compute_jobs_by_peer ON compute_jobs (counter_party_id, peer_job_id);
CREATE INDEX compute_jobs_by_agreement ON compute_jobs (agreement_id);

-- Jobs admitted per agreement, next to its pulls: the compare-and-set on this counter orders admissions.
ALTER TABLE agreement_usage ADD COLUMN jobs BIGINT NOT NULL DEFAULT 0;
