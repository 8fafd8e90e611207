//! The self-check of a stored log: what the connector runs over its own tables at start-up and on a schedule, and
//! what `hanse audit verify --store` runs over a database offline. No I/O: the store feeds the rows.
//!
//! Every stored part is held to the entries' bytes: each entry's sequence number, canonical form and index columns
//! (type, agreement, participant, dataset, time) against its own JSON; the root recorded with each entry and every
//! perfect-subtree hash against the tree recomputed from the entries (and no node more); the head row's size and
//! frontier; and each signed tree head's signature, its size and its stored root copy against the recomputed roots.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::head;
use super::merkle::{self, Frontier, Hash};
use super::verify::{Fault, fault};
use hanse_keys::jose::Object;

/// One row of the entries table, as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    pub seq: i64,
    /// Milliseconds, the indexed copy of the entry's `at`.
    pub at: i64,
    pub kind: &'a str,
    pub agreement: Option<&'a str>,
    pub participant: Option<&'a str>,
    pub dataset: Option<&'a str>,
    /// The leaf's exact bytes.
    pub entry: &'a str,
    pub root: &'a [u8],
}

/// The tree recomputed entry by entry from the stored entries.
#[derive(Debug, Clone, Default)]
pub struct Recompute {
    frontier: Frontier,
}

impl Recompute {
    pub fn new() -> Recompute {
        Recompute::default()
    }

    /// The entries checked so far.
    pub fn size(&self) -> u64 {
        self.frontier.size
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Checks the next stored entry and its index columns; answers the perfect subtrees it completes, as
    /// `(node id, hash)`, which the stored nodes must equal.
    pub fn next(&mut self, row: &StoredEntry<'_>) -> Result<Vec<(u64, Hash)>, Fault> {
        let position = self.frontier.size;
        if row.seq != position as i64 {
            return Err(fault(
                position,
                format!(
                    "the table holds entry {} where entry {position} belongs: an entry is missing, duplicated or moved",
                    row.seq
                ),
            ));
        }
        let entry = entry_bytes(position, row.entry)?;
        let text = |name: &str| entry.get(name).and_then(Json::as_str);
        let columns = [
            ("type", Some(row.kind), text("type")),
            ("agreement_id", row.agreement, text("agreement")),
            ("participant", row.participant, text("participant")),
            ("dataset", row.dataset, text("dataset")),
        ];
        for (column, stored, inside) in columns {
            if stored != inside {
                return Err(fault(
                    position,
                    format!(
                        "its indexed {column} ({}) is not the entry's ({}): the index was altered",
                        stored.unwrap_or("none"),
                        inside.unwrap_or("none")
                    ),
                ));
            }
        }
        if text("at") != Some(hanse_core::encode::rfc3339_millis(row.at).as_str()) {
            return Err(fault(position, "its indexed time is not the entry's: the index was altered"));
        }
        let completed = self.frontier.push(merkle::leaf_hash(row.entry.as_bytes()));
        if row.root != self.frontier.root() {
            return Err(fault(position, "the root stored with it is not the root of the log up to it: it was altered"));
        }
        Ok(completed)
    }
}

/// An entry's bytes checked on their own: JSON, canonical (RFC 8785), stating its own sequence number. Answers the
/// parsed entry.
pub(crate) fn entry_bytes(position: u64, bytes: &str) -> Result<Json, Fault> {
    let parsed: Json = serde_json::from_str(bytes)
        .map_err(|e| fault(position, format!("the entry is not readable JSON ({e}): it was altered")))?;
    if parsed.get("seq").and_then(Json::as_u64) != Some(position) {
        return Err(fault(position, "the entry does not state its own sequence number: it was altered or moved"));
    }
    if serde_json_canonicalizer::pipe(bytes).ok().as_deref() != Some(bytes) {
        return Err(fault(position, "the entry is not canonical JSON (RFC 8785): it was altered"));
    }
    Ok(parsed)
}

/// Compares the subtree hashes an entry completed with the stored ones (`stored` answers a node's hash, if any).
pub fn check_nodes(
    position: u64,
    completed: &[(u64, Hash)],
    stored: impl Fn(u64) -> Option<Hash>,
) -> Result<(), Fault> {
    for (id, hash) in completed {
        match stored(*id) {
            Some(found) if found == *hash => {}
            Some(_) => {
                return Err(fault(position, format!("the stored hash of tree node {id} is not the entries' hash")));
            }
            None => return Err(fault(position, format!("tree node {id} is missing"))),
        }
    }
    Ok(())
}

/// How many perfect subtrees a log of `size` entries has: each leaf, and each block completed by a carry.
pub fn node_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// The head row against the recomputed log.
pub fn check_head_row(recomputed: &Frontier, size: i64, frontier: &[u8]) -> Result<(), Fault> {
    if size != recomputed.size as i64 {
        return Err(fault(
            None,
            format!("the head row says {size} entries, the table holds {}: the log was cut or padded", recomputed.size),
        ));
    }
    if frontier != recomputed.to_bytes() {
        return Err(fault(None, "the head row's frontier is not the entries' tree: the next entry would fork the log"));
    }
    Ok(())
}

/// A tree head the log signed, as kept (its size, its stored root copy and its JWS), against the root recomputed at
/// its size: signed by one of the log's keys (`keys`: every key it ever held), for this log, and agreeing.
pub fn check_signed_head(
    log: &str,
    keys: &BTreeMap<String, Object>,
    size: i64,
    root_copy: &[u8],
    jws: &str,
    recomputed: Option<Hash>,
) -> Result<(), Fault> {
    let at = |message: String| fault(None, format!("the signed tree head of size {size}: {message}"));
    let claimed = head::read(jws).map_err(at)?;
    let jwk = keys.get(&claimed.kid).ok_or_else(|| at(format!("the key {} is not one of the log's", claimed.kid)))?;
    let signed = head::verify(jws, jwk).map_err(at)?;
    if signed.log != log {
        return Err(at(format!("it is signed for {}", signed.log)));
    }
    if signed.size as i64 != size {
        return Err(at(format!("it is kept under size {size} but signs size {}", signed.size)));
    }
    if root_copy != signed.root {
        return Err(at("the root stored beside it is not the root it signs".into()));
    }
    match recomputed {
        Some(root) if root == signed.root => Ok(()),
        Some(_) => Err(fault(
            (size as u64).checked_sub(1),
            format!("the entries before it no longer hash to the signed tree head of size {size}"),
        )),
        None => Err(at("the log holds fewer entries than it signed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn rows(n: u64) -> Vec<(String, i64, Hash)> {
        let mut frontier = Frontier::default();
        (0..n)
            .map(|seq| {
                let entry = Event::new("contract.agreement", serde_json::json!({"n": seq}))
                    .agreement(Some("urn:uuid:a"))
                    .entry(seq, 1_700_000_000_000);
                frontier.push(merkle::leaf_hash(entry.as_bytes()));
                (entry, 1_700_000_000_000, frontier.root())
            })
            .collect()
    }

    fn stored<'a>(seq: i64, (entry, at, root): &'a (String, i64, Hash)) -> StoredEntry<'a> {
        StoredEntry {
            seq,
            at: *at,
            kind: "contract.agreement",
            agreement: Some("urn:uuid:a"),
            participant: None,
            dataset: None,
            entry,
            root,
        }
    }

    #[test]
    fn an_untouched_table_recomputes_and_every_node_is_counted() {
        let rows = rows(13);
        let mut check = Recompute::new();
        let mut nodes = 0;
        for (seq, row) in rows.iter().enumerate() {
            nodes += check.next(&stored(seq as i64, row)).unwrap().len() as u64;
        }
        assert_eq!(nodes, node_count(13));
        assert!(check_head_row(check.frontier(), 13, &check.frontier().to_bytes()).is_ok());
        assert!(check_head_row(check.frontier(), 12, &check.frontier().to_bytes()).is_err());
    }

    #[test]
    fn an_index_column_that_disagrees_with_its_entry_is_named() {
        let rows = rows(3);
        let mut check = Recompute::new();
        check.next(&stored(0, &rows[0])).unwrap();
        let mut row = stored(1, &rows[1]);
        row.agreement = Some("urn:uuid:other");
        let fault = check.next(&row).unwrap_err();
        assert_eq!(fault.position, Some(1));
        assert!(fault.message.contains("agreement_id"), "{fault}");
    }
}
