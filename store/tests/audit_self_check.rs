//! The audit log's self-check against every single change someone with database access can make to its tables, on
//! SQLite and PostgreSQL: each is found, named, and a sealed log refuses to grow.

use std::collections::BTreeMap;

use hanse_audit::merkle::{self, Frontier};
use hanse_audit::{Event, head};
use hanse_keys::ring::KeyRing;
use hanse_store::testing::{TestDatabase, backends};
use hanse_store::{AuditFilter, DocumentKind, SelfCheck, SignedHead, Store, StoreError};
use serde_json::json;

const LOG: &str = "did:web:hospital-a.example";
const ENTRIES: u64 = 40;

struct Log {
    database: TestDatabase,
    keys: BTreeMap<String, hanse_keys::jose::Object>,
    _dir: tempfile::TempDir,
}

/// A log of 40 varied entries with tree heads signed at sizes 10, 20 and 40.
async fn log(backend: hanse_store::testing::Backend) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("participant.pem");
    std::fs::write(&file, hanse_keys::generate_p256().unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap();
    let ring = KeyRing::load(LOG, &file).unwrap();
    let database = TestDatabase::new(backend);
    let store = database.open().await;
    for seq in 0..ENTRIES {
        let event = Event::new("contract.agreement", json!({"n": seq, "digest": format!("{seq:064}")}))
            .agreement(Some(&format!("urn:uuid:agreement-{}", seq % 7)))
            .participant(Some(&format!("did:web:peer-{}.example", seq % 3)))
            .dataset((seq % 2 == 0).then_some("cohort-1"));
        store.audit.append_audit(vec![event]).await.unwrap();
        if [10, 20, ENTRIES].contains(&(seq + 1)) {
            let frontier = store.audit.audit_frontier().await.unwrap();
            let signed = head::sign(&ring, frontier.size, &frontier.root(), 1_700_000_000_000);
            let kept = SignedHead {
                size: frontier.size as i64,
                root: frontier.root().to_vec(),
                signed_at: signed.timestamp,
                jws: signed.jws,
            };
            store.audit.keep_signed_head(&kept).await.unwrap();
        }
    }
    store.close().await;
    Log { database, keys: ring.all(), _dir: dir }
}

async fn check(log: &Log) -> (Store, SelfCheck) {
    let store = log.database.open().await;
    let checked = store.audit.self_check(LOG, &log.keys).await.unwrap();
    (store, checked)
}

#[tokio::test]
async fn an_untouched_log_is_intact_and_grows() {
    for backend in backends() {
        let log = log(backend).await;
        let (store, checked) = check(&log).await;
        assert_eq!(checked, SelfCheck { size: ENTRIES, fault: None }, "{backend:?}");
        store.audit.append_audit(vec![Event::new("test.after", json!({}))]).await.unwrap();
        assert_eq!(store.audit.self_check(LOG, &log.keys).await.unwrap().size, ENTRIES + 1);
        store.close().await;
    }
}

/// Applies the statements `tamper` builds for the database and expects a fault at `position` whose message contains
/// `says`; then the sealed store refuses appends on both paths (the writer's and a transaction's) and still reads.
async fn caught(tamper: impl Fn(&TestDatabase) -> Vec<String>, position: Option<u64>, says: &str) {
    for backend in backends() {
        let log = log(backend).await;
        for sql in tamper(&log.database) {
            log.database.execute(&sql).await;
        }
        let (store, checked) = check(&log).await;
        let fault = checked.fault.unwrap_or_else(|| panic!("{backend:?}: the change was not noticed"));
        assert!(fault.message.contains(says), "{backend:?}: {fault}");
        assert_eq!(fault.position, position, "{backend:?}: {fault}");
        store.audit.seal(fault.to_string());
        let refused = store.audit.append_audit(vec![Event::new("test.after", json!({}))]).await.unwrap_err();
        assert!(matches!(refused, StoreError::Sealed(_)), "{backend:?}: {refused}");
        let refused = store.documents.insert_document(DocumentKind::Asset, "a", &json!({})).await.unwrap_err();
        assert!(matches!(refused, StoreError::Sealed(_)), "{backend:?}: {refused}");
        let entries = store.audit.audit_entries(&AuditFilter { limit: 5, ..Default::default() }).await.unwrap();
        assert!(!entries.is_empty(), "{backend:?}: a sealed log is still read");
        store.close().await;
    }
}

fn sql(text: &str) -> impl Fn(&TestDatabase) -> Vec<String> + '_ {
    move |_| vec![text.to_owned()]
}

#[tokio::test]
async fn a_changed_entry_is_caught() {
    let change = r#"UPDATE audit_entries SET entry = replace(entry, '"n":13', '"n":14') WHERE seq = 13"#;
    caught(sql(change), Some(13), "the root stored with it is not the root").await;
}

#[tokio::test]
async fn a_deleted_entry_is_caught() {
    caught(sql("DELETE FROM audit_entries WHERE seq = 7"), Some(7), "entry 8 where entry 7 belongs").await;
}

#[tokio::test]
async fn an_entry_added_behind_the_head_is_caught() {
    let add = "INSERT INTO audit_entries (seq, at, type, agreement_id, participant, dataset, entry, root) \
               SELECT 40, at, type, agreement_id, participant, dataset, entry, root FROM audit_entries WHERE seq = 39";
    caught(sql(add), Some(40), "does not state its own sequence number").await;
}

#[tokio::test]
async fn swapped_entries_are_caught() {
    let swap = "UPDATE audit_entries SET seq = -1 WHERE seq = 21; \
                UPDATE audit_entries SET seq = 21 WHERE seq = 22; UPDATE audit_entries SET seq = 22 WHERE seq = -1";
    let statements = move |_: &TestDatabase| swap.split("; ").map(str::to_owned).collect();
    caught(statements, Some(21), "does not state its own sequence number").await;
}

#[tokio::test]
async fn a_changed_stored_root_is_caught() {
    let change = "UPDATE audit_entries SET root = (SELECT root FROM audit_entries WHERE seq = 3) WHERE seq = 30";
    caught(sql(change), Some(30), "the root stored with it").await;
}

#[tokio::test]
async fn every_changed_index_column_is_caught() {
    for (column, value, says) in [
        ("type", "'contract.termination'", "indexed type"),
        ("agreement_id", "'urn:uuid:hidden'", "indexed agreement_id"),
        ("agreement_id", "NULL", "indexed agreement_id"),
        ("participant", "'did:web:someone-else.example'", "indexed participant"),
        ("dataset", "'cohort-2'", "indexed dataset"),
        ("at", "at + 3600000", "indexed time"),
    ] {
        let change = format!("UPDATE audit_entries SET {column} = {value} WHERE seq = 18");
        caught(sql(&change), Some(18), says).await;
    }
}

#[tokio::test]
async fn a_changed_tree_node_is_caught() {
    // Node 11 is the block of leaves 4..8; leaf 7 completes it.
    let change = "UPDATE audit_nodes SET hash = (SELECT hash FROM audit_nodes WHERE id = 0) WHERE id = 11";
    caught(sql(change), Some(7), "tree node 11 is not the entries' hash").await;
}

#[tokio::test]
async fn a_missing_tree_node_is_caught() {
    caught(sql("DELETE FROM audit_nodes WHERE id = 24"), Some(12), "tree node 24 is missing").await;
}

#[tokio::test]
async fn an_added_tree_node_is_caught() {
    let add = "INSERT INTO audit_nodes (id, hash) SELECT 1000001, hash FROM audit_nodes WHERE id = 0";
    caught(sql(add), None, "nodes were added or removed").await;
}

#[tokio::test]
async fn a_changed_head_row_is_caught() {
    caught(sql("UPDATE audit_head SET size = size - 1"), None, "the head row says 39 entries").await;
    let change = "UPDATE audit_head SET frontier = (SELECT hash FROM audit_nodes WHERE id = 0)";
    caught(sql(change), None, "frontier is not the entries' tree").await;
}

#[tokio::test]
async fn a_changed_signed_head_is_caught() {
    let moved = "UPDATE audit_tree_heads SET jws = (SELECT jws FROM audit_tree_heads WHERE size = 10) WHERE size = 20";
    caught(sql(moved), None, "kept under size 20 but signs size 10").await;
    let root = "UPDATE audit_tree_heads SET root = (SELECT root FROM audit_entries WHERE seq = 0) WHERE size = 20";
    caught(sql(root), None, "the root stored beside it is not the root it signs").await;
    let forged = "UPDATE audit_tree_heads SET jws = jws || 'A' WHERE size = 40";
    caught(sql(forged), None, "signed tree head of size 40").await;
}

/// The whole table rewritten consistently from entry 5 on (roots, nodes and head recomputed): only the heads the
/// log signed before can tell, and they do.
#[tokio::test]
async fn a_consistently_rewritten_history_is_caught_by_the_signed_heads() {
    let rewrite = |database: &TestDatabase| {
        let mut statements = Vec::new();
        let mut frontier = Frontier::default();
        for seq in 0..ENTRIES {
            let event = Event::new("contract.agreement", json!({"n": seq, "digest": format!("{seq:064}")}))
                .agreement(Some(&format!("urn:uuid:agreement-{}", if seq == 5 { 6 } else { seq % 7 })))
                .participant(Some(&format!("did:web:peer-{}.example", seq % 3)))
                .dataset((seq % 2 == 0).then_some("cohort-1"));
            let entry = event.entry(seq, 1_700_000_000_000);
            let nodes = frontier.push(merkle::leaf_hash(entry.as_bytes()));
            let root = database.bytes_literal(&frontier.root());
            statements.push(format!(
                "UPDATE audit_entries SET entry = '{entry}', at = 1700000000000, root = {root}, agreement_id = '{}' \
                 WHERE seq = {seq}",
                format_args!("urn:uuid:agreement-{}", if seq == 5 { 6 } else { seq % 7 })
            ));
            for (id, hash) in nodes {
                statements
                    .push(format!("UPDATE audit_nodes SET hash = {} WHERE id = {id}", database.bytes_literal(&hash)));
            }
        }
        statements.push(format!("UPDATE audit_head SET frontier = {}", database.bytes_literal(&frontier.to_bytes())));
        statements
    };
    caught(rewrite, Some(9), "no longer hash to the signed tree head of size 10").await;
}
