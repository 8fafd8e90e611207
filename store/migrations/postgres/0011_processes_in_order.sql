-- The management API pages negotiations and transfers in SQL, newest first or by state, and the overview counts
-- them by state and role (decision 0039): indexes that answer both without reading a row. Each replaces the index
-- on the state alone, which it covers; `role` and `created_at` never change, so a transition updates one index entry
-- as before.
DROP INDEX negotiations_by_state;
CREATE INDEX negotiations_by_state ON negotiations (state, role, created_at, id);
CREATE INDEX negotiations_by_age ON negotiations (created_at, id);
DROP INDEX transfers_by_state;
CREATE INDEX transfers_by_state ON transfers (state, role, created_at, id);
CREATE INDEX transfers_by_age ON transfers (created_at, id);
