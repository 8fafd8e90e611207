-- Leases (decision 0040): what one replica of a connector does at a time. Its holder renews it; it expires when its
-- holder dies, and another replica takes it over.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
