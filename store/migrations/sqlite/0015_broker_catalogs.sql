-- A broker's crawled catalogues (decision 0042): the last catalogue read from each peer, so that a restarted broker
-- answers at once from what it had instead of crawling everything again. It goes with its peer.
CREATE TABLE broker_catalogs (
    did TEXT PRIMARY KEY REFERENCES peers (did) ON DELETE CASCADE,
    address TEXT NOT NULL,               -- the peer's versioned DSP base the catalogue was read from
    country TEXT,                        -- the publisher's country from its verified self-description, if any
    digest TEXT NOT NULL,                -- SHA-256 (hex) of address, country and catalogue, as the crawl computed it
    catalog TEXT NOT NULL,               -- the DSP Catalog as crawled (JSON, every page merged)
    crawled_at BIGINT NOT NULL,          -- the last successful crawl (ms)
    changed_at BIGINT NOT NULL           -- the last crawl that found it different (ms)
);
