-- The DSP negotiation is turn-based: a negotiation has at most one outgoing message at a time. It now lives in the
-- negotiation's own row, so that a state change and the message it sends are one UPDATE. Agreements are read from the
-- negotiation that made them.
ALTER TABLE negotiations ADD COLUMN out_url TEXT;
ALTER TABLE negotiations ADD COLUMN out_message TEXT;
ALTER TABLE negotiations ADD COLUMN out_final INTEGER NOT NULL DEFAULT 0;
ALTER TABLE negotiations ADD COLUMN out_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE negotiations ADD COLUMN out_next_at INTEGER;
ALTER TABLE negotiations ADD COLUMN out_lease INTEGER;
ALTER TABLE negotiations ADD COLUMN out_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE negotiations ADD COLUMN agreement_id TEXT;
CREATE INDEX negotiations_outgoing ON negotiations (out_next_at) WHERE out_message IS NOT NULL;
CREATE UNIQUE INDEX negotiations_by_agreement ON negotiations (agreement_id);
-- Messages still waiting in the old outbox move into their negotiation's row (the newest one per negotiation).
UPDATE negotiations SET
    out_url = (SELECT url FROM outbox o WHERE o.negotiation_id = negotiations.id ORDER BY id DESC LIMIT 1),
    out_message = (SELECT message FROM outbox o WHERE o.negotiation_id = negotiations.id ORDER BY id DESC LIMIT 1),
    out_final = COALESCE((SELECT final_notice FROM outbox o WHERE o.negotiation_id = negotiations.id ORDER BY id DESC LIMIT 1), 0),
    out_next_at = (SELECT next_attempt_at FROM outbox o WHERE o.negotiation_id = negotiations.id ORDER BY id DESC LIMIT 1)
WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.negotiation_id = negotiations.id);
UPDATE negotiations SET agreement_id = (SELECT a.id FROM agreements a WHERE a.negotiation_id = negotiations.id ORDER BY a.signed_at DESC LIMIT 1);
DROP TABLE outbox;
DROP TABLE agreements;
