//! Offline verification of an exported log (`hanse audit verify`): no network, no database.
//!
//! An export is JSON Lines: a header (the log's DID, its keys, the range, the frontier before the range), one line per
//! entry (`seq`, the root recorded once it was appended, the entry's exact bytes), then the signed tree heads the
//! connector issued within the range. The verifier recomputes the tree entry by entry, so the first entry that does
//! not hash to what was recorded — or is missing, duplicated or out of place — is named; it checks every signature,
//! every head against the recomputed roots, each receipt's inclusion proof and its agreement with the log, and the log
//! against heads (or earlier exports) the auditor saw before.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};

use super::head::{self, TreeHead};
use super::merkle::{self, Frontier, Hash, from_hex, to_hex};
use hanse_keys::jose::Object;

/// Marks an export's header line.
pub const EXPORT_FORMAT: &str = "hanse-audit-export/1";

/// The first thing found wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The entry (sequence number) at fault, when it can be named.
    pub position: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(position) => write!(f, "entry {position}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub(crate) fn fault(position: impl Into<Option<u64>>, message: impl Into<String>) -> Fault {
    Fault { position: position.into(), message: message.into() }
}

/// A read and self-consistent export.
#[derive(Debug, Clone)]
pub struct Log {
    pub log: String,
    pub from: u64,
    keys: BTreeMap<String, Object>,
    /// The root after each entry, from `from`.
    roots: Vec<Hash>,
    /// Each entry's exact bytes, from `from`.
    entries: Vec<String>,
    start_root: Hash,
    /// The signed heads the export carries.
    pub heads: Vec<TreeHead>,
}

impl Log {
    /// Entries `[from, to)`.
    pub fn to(&self) -> u64 {
        self.from + self.roots.len() as u64
    }

    /// The root of the first `size` entries, if the export covers that size.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size == self.from {
            Some(self.start_root)
        } else if size > self.from && size <= self.to() {
            Some(self.roots[(size - self.from - 1) as usize])
        } else {
            None
        }
    }

    /// The exact bytes of entry `seq`, if the export covers it.
    pub fn entry(&self, seq: u64) -> Option<&str> {
        seq.checked_sub(self.from).and_then(|i| self.entries.get(i as usize)).map(String::as_str)
    }

    /// Checks a head's signature against the log's keys.
    fn check_signature(&self, jws: &str) -> Result<TreeHead, String> {
        let head = head::read(jws)?;
        if head.log != self.log {
            return Err(format!(
                "the tree head of size {} is signed for {}, not for {}",
                head.size, head.log, self.log
            ));
        }
        let jwk = self.keys.get(&head.kid).ok_or_else(|| format!("the key {} is not one of the log's", head.kid))?;
        head::verify(jws, jwk)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    log: String,
    from: u64,
    keys: BTreeMap<String, Object>,
    frontier: Vec<String>,
}

#[derive(Deserialize)]
struct Line<'a> {
    seq: Option<u64>,
    root: Option<String>,
    #[serde(borrow)]
    entry: Option<&'a RawValue>,
    #[serde(rename = "treeHead")]
    tree_head: Option<String>,
}

/// The header line of an export.
pub fn header_line(log: &str, from: u64, keys: &[(String, Object)], frontier: &Frontier) -> String {
    let keys: serde_json::Map<String, Json> =
        keys.iter().map(|(kid, jwk)| (kid.clone(), Json::Object(jwk.clone()))).collect();
    let frontier: Vec<String> = frontier.blocks.iter().map(to_hex).collect();
    json!({"format": EXPORT_FORMAT, "log": log, "from": from, "keys": keys, "frontier": frontier}).to_string()
}

/// The line of one entry (`entry` is canonical JSON, written as it is).
pub fn entry_line(seq: u64, root: &Hash, entry: &str) -> String {
    format!(r#"{{"seq":{seq},"root":"{}","entry":{entry}}}"#, to_hex(root))
}

/// The line of one signed head.
pub fn head_line(jws: &str) -> String {
    json!({"treeHead": jws}).to_string()
}

/// Reads an export, recomputing its tree: the first entry that breaks it is the fault's position.
pub fn read_export(text: &str) -> Result<Log, Fault> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Header = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| fault(None, "the first line is not an audit export header"))?;
    if header.format != EXPORT_FORMAT {
        return Err(fault(None, format!("unknown export format `{}`", header.format)));
    }
    let blocks: Option<Vec<Hash>> = header.frontier.iter().map(|h| from_hex(h)).collect();
    let frontier = blocks
        .and_then(|blocks| Frontier::from_bytes(header.from, &blocks.concat()))
        .ok_or_else(|| fault(None, "the header's frontier does not fit its starting size"))?;
    let mut log = Log {
        log: header.log,
        from: header.from,
        keys: header.keys,
        roots: Vec::new(),
        entries: Vec::new(),
        start_root: frontier.root(),
        heads: Vec::new(),
    };
    let mut frontier = frontier;
    for line in lines {
        let position = frontier.size;
        let parsed: Line = serde_json::from_str(line)
            .map_err(|e| fault(position, format!("the line is not readable JSON ({e}): the entry was altered")))?;
        if let Some(jws) = parsed.tree_head {
            log.heads.push(log.check_signature(&jws).map_err(|m| fault(None, m))?);
            continue;
        }
        if !log.heads.is_empty() {
            return Err(fault(position, "an entry follows the tree heads"));
        }
        let (Some(seq), Some(root), Some(entry)) =
            (parsed.seq, parsed.root.as_deref().and_then(from_hex), parsed.entry)
        else {
            return Err(fault(position, "the line lacks seq, root or entry"));
        };
        if seq != position {
            return Err(fault(
                position,
                format!("found entry {seq} where entry {position} belongs: an entry is missing, duplicated or moved"),
            ));
        }
        let bytes = entry.get();
        super::check::entry_bytes(position, bytes)?;
        frontier.push(merkle::leaf_hash(bytes.as_bytes()));
        if frontier.root() != root {
            return Err(fault(
                position,
                "the entry does not hash to the root recorded when it was appended: it was altered",
            ));
        }
        log.roots.push(root);
        log.entries.push(bytes.to_owned());
    }
    for head in &log.heads {
        match log.root_at(head.size) {
            Some(root) if root == head.root => {}
            Some(_) => {
                return Err(fault(
                    head.size.checked_sub(1),
                    format!("the entries before it no longer hash to the signed tree head of size {}", head.size),
                ));
            }
            None if head.size > log.to() => {
                return Err(fault(
                    log.to(),
                    format!("the log signed a head of size {}: the entries from here on are missing", head.size),
                ));
            }
            None => {
                return Err(fault(None, format!("the signed tree head of size {} is before the export", head.size)));
            }
        }
    }
    if !log.heads.iter().any(|h| h.size == log.to()) {
        return Err(fault(None, format!("no signed tree head covers the export's end (size {})", log.to())));
    }
    Ok(log)
}

/// A receipt: a peer's signed head, its entry of an agreement and the inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub agreement_id: String,
    /// The entry's sequence number in the issuer's log.
    pub index: u64,
    /// The entry's exact bytes.
    pub entry: String,
    pub tree_head: String,
    /// Hex hashes, bottom up.
    pub inclusion_proof: Vec<String>,
}

impl Receipt {
    /// Checks the receipt on its own, with the issuer's key: the head's signature and the entry's inclusion in it,
    /// and that the entry is the agreement's. Answers the head.
    pub fn check(&self, jwk: &Object) -> Result<TreeHead, String> {
        let head = head::verify(&self.tree_head, jwk)?;
        let proof: Option<Vec<Hash>> = self.inclusion_proof.iter().map(|h| from_hex(h)).collect();
        let proof = proof.ok_or("the inclusion proof is not a list of hex hashes")?;
        if !merkle::verify_inclusion(&head.root, head.size, self.entry.as_bytes(), self.index, &proof) {
            return Err(format!("the entry is not entry {} of the signed tree of size {}", self.index, head.size));
        }
        let entry: Json = serde_json::from_str(&self.entry).map_err(|_| "the entry is not JSON")?;
        if entry.get("type").and_then(Json::as_str) != Some("contract.agreement")
            || entry.get("agreement").and_then(Json::as_str) != Some(&self.agreement_id)
        {
            return Err(format!("the entry is not the log's record of agreement {}", self.agreement_id));
        }
        Ok(head)
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub log: String,
    pub from: u64,
    pub to: u64,
    pub root: Hash,
    pub heads: usize,
    pub evidence: usize,
    pub receipts: usize,
}

/// Something the auditor saw before: a signed head, or an earlier export.
#[derive(Debug, Clone)]
pub enum Evidence {
    Head(String),
    Export(Log),
}

/// Reads a file given as earlier evidence: an export, a head as the APIs show it, or a bare JWS.
pub fn read_evidence(text: &str) -> Result<Evidence, Fault> {
    let first = text.lines().next().unwrap_or_default();
    if first.contains(EXPORT_FORMAT) {
        return read_export(text).map(Evidence::Export);
    }
    let trimmed = text.trim();
    let jws = match serde_json::from_str::<Json>(trimmed) {
        Ok(value) => value
            .get("signature")
            .or_else(|| value.get("treeHead"))
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| fault(None, "the head file has no signature"))?,
        Err(_) => trimmed.trim_matches('"').to_owned(),
    };
    Ok(Evidence::Head(jws))
}

/// Verifies an export against earlier evidence and receipts.
pub fn verify(export: &str, evidence: &[Evidence], receipts: &[Receipt]) -> Result<Verdict, Fault> {
    let log = read_export(export)?;
    for item in evidence {
        match item {
            Evidence::Head(jws) => {
                let head = log.check_signature(jws).map_err(|m| fault(None, m))?;
                check_head(&log, &head, "a tree head seen before")?;
            }
            Evidence::Export(earlier) => {
                if earlier.log != log.log {
                    return Err(fault(None, format!("the earlier export is of {}, not of {}", earlier.log, log.log)));
                }
                let (from, to) = (earlier.from.max(log.from), earlier.to().min(log.to()));
                for seq in from..to {
                    if earlier.root_at(seq + 1) != log.root_at(seq + 1) {
                        return Err(fault(
                            seq,
                            "it differs from the earlier export: the log was rewritten from here on",
                        ));
                    }
                }
                if earlier.to() > log.to() {
                    return Err(fault(log.to(), "the earlier export is longer: the log was rolled back"));
                }
            }
        }
    }
    for receipt in receipts {
        let head = head::read(&receipt.tree_head).map_err(|m| fault(None, m))?;
        let jwk = log
            .keys
            .get(&head.kid)
            .ok_or_else(|| fault(None, format!("the key {} is not one of the log's", head.kid)))?;
        let head = receipt
            .check(jwk)
            .map_err(|m| fault(None, format!("the receipt for {} is void: {m}", receipt.agreement_id)))?;
        if head.log != log.log {
            return Err(fault(None, format!("the receipt for {} is from {}", receipt.agreement_id, head.log)));
        }
        if log.entry(receipt.index).is_some_and(|e| e != receipt.entry) {
            return Err(fault(
                receipt.index,
                format!("it differs from the entry the receipt for agreement {} holds", receipt.agreement_id),
            ));
        }
        check_head(&log, &head, &format!("the receipt for agreement {}", receipt.agreement_id))?;
    }
    Ok(Verdict {
        log: log.log.clone(),
        from: log.from,
        to: log.to(),
        root: log.root_at(log.to()).expect("the export's end"),
        heads: log.heads.len(),
        evidence: evidence.len(),
        receipts: receipts.len(),
    })
}

/// A signed head from elsewhere against the recomputed log.
fn check_head(log: &Log, head: &TreeHead, what: &str) -> Result<(), Fault> {
    match log.root_at(head.size) {
        Some(root) if root == head.root => Ok(()),
        Some(_) => Err(fault(
            head.size.checked_sub(1),
            format!(
                "the log's first {} entries no longer hash to the head of {what}: it was rewritten at or before this entry",
                head.size
            ),
        )),
        None if head.size > log.to() => Err(fault(
            None,
            format!(
                "{what} is of size {}, beyond the export's end {}: the log was rolled back or the export is short",
                head.size,
                log.to()
            ),
        )),
        None => Err(fault(None, format!("{what} is of size {}, before the export's start {}", head.size, log.from))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Event;
    use hanse_keys::ring::KeyRing;

    fn new_keys() -> (tempfile::TempDir, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("participant.pem");
        std::fs::write(&file, hanse_keys::generate_p256().unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap();
        let keys = KeyRing::load("did:web:hospital-a.example", &file).unwrap();
        (dir, keys)
    }

    /// An export of `contents` as entries, with a signed head after every `every` entries and at the end.
    fn export(keys: &KeyRing, contents: &[String], every: usize) -> Vec<String> {
        let mut frontier = Frontier::default();
        let mut entries = Vec::new();
        let mut heads = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            let entry =
                Event::new("negotiation.transition", json!({"process": content})).entry(i as u64, 1_700_000_000_000);
            frontier.push(merkle::leaf_hash(entry.as_bytes()));
            entries.push(entry_line(i as u64, &frontier.root(), &entry));
            if (i + 1) % every == 0 || i + 1 == contents.len() {
                heads.push(head_line(&head::sign(keys, frontier.size, &frontier.root(), 0).jws));
            }
        }
        let mut lines = vec![header_line(keys.did(), 0, &keys.listed(chrono::Utc::now()), &Frontier::default())];
        lines.extend(entries);
        lines.extend(heads);
        lines
    }

    fn text(lines: &[String]) -> String {
        lines.join("\n")
    }

    fn contents(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("urn:uuid:{tag}-{i}")).collect()
    }

    #[test]
    fn an_untouched_export_verifies_and_a_foreign_key_does_not() {
        let (_dir, keys) = new_keys();
        let lines = export(&keys, &contents(37, "a"), 10);
        let verdict = verify(&text(&lines), &[], &[]).unwrap();
        assert_eq!((verdict.from, verdict.to, verdict.heads), (0, 37, 4));
        let (_other_dir, other) = new_keys();
        let mut forged = lines.clone();
        forged[0] = header_line(keys.did(), 0, &other.listed(chrono::Utc::now()), &Frontier::default());
        assert!(verify(&text(&forged), &[], &[]).unwrap_err().message.contains("not one of the log's"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Flip one byte of any entry, delete an entry, swap two, or roll the log back and append differently:
        /// verification fails, and names the entry where the log stops being the one that was signed or seen.
        #[test]
        fn every_tampering_is_caught_at_its_position(
            n in 2usize..120,
            every in 1usize..20,
            kind in 0u8..4,
            a in any::<u64>(),
            b in any::<u64>(),
            byte in 32u8..127,
        ) {
            let (_dir, keys) = new_keys();
            let original = export(&keys, &contents(n, "a"), every);
            let i = (a % n as u64) as usize;
            let (tampered, evidence, expected) = match kind {
                0 => {
                    // One byte of entry i's stored text.
                    let line = &original[1 + i];
                    let start = line.find("\"entry\":").unwrap() + 8;
                    let offset = start + (b as usize % (line.len() - 1 - start));
                    let mut bytes = line.clone().into_bytes();
                    prop_assume!(bytes[offset] != byte);
                    bytes[offset] = byte;
                    let mut lines = original.clone();
                    lines[1 + i] = String::from_utf8(bytes).unwrap();
                    (lines, Vec::new(), i as u64)
                }
                1 => {
                    let mut lines = original.clone();
                    lines.remove(1 + i);
                    (lines, Vec::new(), i as u64)
                }
                2 => {
                    let j = (b % n as u64) as usize;
                    prop_assume!(i != j);
                    let mut lines = original.clone();
                    lines.swap(1 + i, 1 + j);
                    (lines, Vec::new(), i.min(j) as u64)
                }
                _ => {
                    // The operator keeps the first i entries, appends others and signs new heads; the auditor
                    // holds the earlier export.
                    let mut rewritten = contents(n, "a");
                    rewritten.truncate(i);
                    rewritten.extend(contents(n - i + (b % 3) as usize, "b"));
                    let earlier = read_export(&text(&original)).unwrap();
                    (export(&keys, &rewritten, every), vec![Evidence::Export(earlier)], i as u64)
                }
            };
            let fault = verify(&text(&tampered), &evidence, &[]).unwrap_err();
            prop_assert_eq!(fault.position, Some(expected), "{}", fault);
        }
    }
}
