-- What a document names and may not lose while it does (decision 0040): a contract definition its access and contract
-- policies. The schema refuses to delete a policy a definition names, whichever replica asks; a definition's
-- references go with it.
CREATE TABLE document_references (
    from_kind TEXT NOT NULL,
    from_id TEXT NOT NULL,
    to_kind TEXT NOT NULL,
    to_id TEXT NOT NULL,
    PRIMARY KEY (from_kind, from_id, to_kind, to_id),
    FOREIGN KEY (from_kind, from_id) REFERENCES documents (kind, id) ON DELETE CASCADE,
    FOREIGN KEY (to_kind, to_id) REFERENCES documents (kind, id) ON DELETE RESTRICT
) WITHOUT ROWID;
CREATE INDEX document_references_to ON document_references (to_kind, to_id);
