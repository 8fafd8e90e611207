//! The store suite: the same scenarios against SQLite and PostgreSQL.

use hanse_store::testing::{Backend, TestDatabase, backends};
use hanse_store::{DocumentKind, StoreError};
use serde_json::json;

/// Runs `scenario` once per backend, each on a fresh database.
macro_rules! on_every_backend {
    ($name:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $name() {
            for backend in backends() {
                let database = TestDatabase::new(backend);
                let store = database.open().await;
                $scenario(&store, backend).await;
                store.close().await;
            }
        }
    };
}

async fn created_documents_read_back(store: &hanse_store::Store, backend: Backend) {
    let body = json!({"properties": {"title": "Diabetes cohort", "numberOfRecords": 1200}});
    let created = store.documents.insert_document(DocumentKind::Asset, "cohort-1", &body).await.unwrap();
    assert_eq!(created.version, 1);
    let read = store.documents.get_document(DocumentKind::Asset, "cohort-1").await.unwrap().unwrap();
    assert_eq!(read.body, body, "{backend:?}");
    assert_eq!(read.created_at, created.created_at);
    assert!(
        store.documents.get_document(DocumentKind::PolicyDefinition, "cohort-1").await.unwrap().is_none(),
        "kinds are separate"
    );
}
on_every_backend!(created_documents_read_back_on_every_backend, created_documents_read_back);

async fn a_duplicate_id_is_a_conflict_and_keeps_the_first(store: &hanse_store::Store, backend: Backend) {
    store.documents.insert_document(DocumentKind::Asset, "a", &json!({"v": 1})).await.unwrap();
    let error = store.documents.insert_document(DocumentKind::Asset, "a", &json!({"v": 2})).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{backend:?}: {error}");
    assert_eq!(store.documents.get_document(DocumentKind::Asset, "a").await.unwrap().unwrap().body, json!({"v": 1}));
}
on_every_backend!(a_duplicate_id_is_a_conflict_on_every_backend, a_duplicate_id_is_a_conflict_and_keeps_the_first);

async fn replace_bumps_the_version_and_unknown_ids_are_not_found(store: &hanse_store::Store, backend: Backend) {
    store.documents.insert_document(DocumentKind::PolicyDefinition, "p", &json!({"v": 1})).await.unwrap();
    let replaced =
        store.documents.replace_document(DocumentKind::PolicyDefinition, "p", &json!({"v": 2})).await.unwrap();
    assert_eq!(replaced.version, 2, "{backend:?}");
    assert_eq!(
        store.documents.get_document(DocumentKind::PolicyDefinition, "p").await.unwrap().unwrap().body,
        json!({"v": 2})
    );
    let missing =
        store.documents.replace_document(DocumentKind::PolicyDefinition, "nope", &json!({})).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }));
    let missing = store.documents.delete_document(DocumentKind::PolicyDefinition, "nope").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }));
}
on_every_backend!(replace_and_not_found_on_every_backend, replace_bumps_the_version_and_unknown_ids_are_not_found);

async fn listing_is_ordered_by_id_and_delete_removes(store: &hanse_store::Store, backend: Backend) {
    for id in ["c", "a", "b"] {
        store.documents.insert_document(DocumentKind::ContractDefinition, id, &json!({"id": id})).await.unwrap();
    }
    let ids: Vec<String> = store
        .documents
        .list_documents(DocumentKind::ContractDefinition)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "{backend:?}");
    store.documents.delete_document(DocumentKind::ContractDefinition, "b").await.unwrap();
    assert_eq!(store.documents.count_documents(DocumentKind::ContractDefinition).await.unwrap(), 2);
}
on_every_backend!(listing_and_delete_on_every_backend, listing_is_ordered_by_id_and_delete_removes);

async fn concurrent_inserts_of_one_id_admit_exactly_one(store: &hanse_store::Store, backend: Backend) {
    let attempts = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store.documents.insert_document(DocumentKind::Asset, "contested", &json!({"writer": i})).await
        })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("{backend:?}: unexpected {other}"),
        }
    }
    assert_eq!(won, 1, "{backend:?}");
}
on_every_backend!(concurrent_inserts_admit_one_on_every_backend, concurrent_inserts_of_one_id_admit_exactly_one);

#[tokio::test]
async fn data_survives_a_restart_on_every_backend() {
    for backend in backends() {
        let database = TestDatabase::new(backend);
        let store = database.open().await;
        store.documents.insert_document(DocumentKind::Asset, "kept", &json!({"title": "kept"})).await.unwrap();
        store.close().await;
        let reopened = database.open().await; // migrations run again and must be a no-op
        assert_eq!(
            reopened.documents.get_document(DocumentKind::Asset, "kept").await.unwrap().unwrap().body["title"],
            "kept"
        );
        reopened.close().await;
    }
}

#[tokio::test]
async fn each_backend_reports_its_dialect() {
    for backend in backends() {
        let store = TestDatabase::new(backend).open().await;
        let expected = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(store.dialect().to_string(), expected);
        store.close().await;
    }
}

async fn a_batch_is_stored_whole_or_not_at_all(store: &hanse_store::Store, backend: Backend) {
    let batch: Vec<(String, serde_json::Value)> = (0..50).map(|i| (format!("d{i:02}"), json!({"n": i}))).collect();
    store.documents.insert_documents(DocumentKind::Asset, &batch).await.unwrap();
    assert_eq!(store.documents.count_documents(DocumentKind::Asset).await.unwrap(), 50, "{backend:?}");
    let clashing = vec![("new".to_owned(), json!({})), ("d07".to_owned(), json!({}))];
    let error = store.documents.insert_documents(DocumentKind::Asset, &clashing).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { ref id, .. } if id == "d07"), "{error}");
    assert!(
        store.documents.get_document(DocumentKind::Asset, "new").await.unwrap().is_none(),
        "{backend:?}: the batch rolled back"
    );
}
on_every_backend!(batches_are_atomic_on_every_backend, a_batch_is_stored_whole_or_not_at_all);

/// Several writers (on PostgreSQL: several pools, as several processes have) append at once: every entry gets its
/// own consecutive sequence number, and the stored roots and subtree hashes are those of the entries in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_build_one_consistent_audit_log() {
    use hanse_audit::Event;
    use hanse_audit::merkle::{Frontier, leaf_hash};
    for backend in backends() {
        let database = TestDatabase::new(backend);
        let stores = [database.open().await, database.open().await, database.open().await];
        let mut writers = Vec::new();
        for (w, store) in stores.iter().enumerate() {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..60 {
                    let events = [
                        Event::new("test.event", json!({"writer": w, "i": i})),
                        Event::new("test.event", json!({"writer": w, "i": i, "second": true})),
                    ];
                    store.audit.append_audit(events[..1 + i % 2].to_vec()).await.unwrap();
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let store = &stores[0];
        let head = store.audit.audit_frontier().await.unwrap();
        assert_eq!(head.size, 3 * 90, "{backend:?}");
        let entries = store.audit.audit_range(0, head.size).await.unwrap();
        let mut frontier = Frontier::default();
        for (seq, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq as usize, seq, "{backend:?}");
            frontier.push(leaf_hash(entry.entry.as_bytes()));
            assert_eq!(entry.root, frontier.root(), "{backend:?}: entry {seq}");
        }
        assert_eq!(frontier, head, "{backend:?}");
        assert_eq!(store.audit.audit_frontier_at(head.size).await.unwrap(), head, "{backend:?}");
        for store in stores {
            store.close().await;
        }
    }
}

async fn a_document_named_by_another_is_not_deleted(store: &hanse_store::Store, backend: Backend) {
    let (policy, definition) = (DocumentKind::PolicyDefinition, DocumentKind::ContractDefinition);
    for id in ["open", "research"] {
        store.documents.insert_document(policy, id, &json!({})).await.unwrap();
    }
    // Naming a document that does not exist is refused, and nothing is made.
    let missing =
        store.documents.insert_referring(definition, "cd", &json!({}), &[(policy, "gone")]).await.unwrap_err();
    assert!(matches!(&missing, StoreError::NotFound { id, .. } if id == "gone"), "{backend:?}: {missing}");
    assert!(store.documents.get_document(definition, "cd").await.unwrap().is_none(), "{backend:?}");

    store.documents.insert_referring(definition, "cd", &json!({}), &[(policy, "open")]).await.unwrap();
    let used = store.documents.delete_document(policy, "open").await.unwrap_err();
    assert!(matches!(&used, StoreError::InUse { by, .. } if by.contains("`cd`")), "{backend:?}: {used}");
    assert!(store.documents.get_document(policy, "open").await.unwrap().is_some());

    // A replace moves the reference; the policy no longer named may go.
    store.documents.replace_referring(definition, "cd", &json!({"v": 2}), Some(&[(policy, "research")])).await.unwrap();
    store.documents.delete_document(policy, "open").await.unwrap();
    assert!(matches!(store.documents.delete_document(policy, "research").await, Err(StoreError::InUse { .. })));
    // A deleted definition takes its references with it.
    store.documents.delete_document(definition, "cd").await.unwrap();
    store.documents.delete_document(policy, "research").await.unwrap();

    // A definition stored before references were kept gets them recorded, once however often it is asked.
    store.documents.insert_document(policy, "kept", &json!({})).await.unwrap();
    store.documents.insert_document(definition, "old", &json!({})).await.unwrap();
    store.documents.ensure_references(definition, "old", &[(policy, "kept")]).await.unwrap();
    store.documents.ensure_references(definition, "old", &[(policy, "kept")]).await.unwrap();
    assert!(
        matches!(store.documents.delete_document(policy, "kept").await, Err(StoreError::InUse { .. })),
        "{backend:?}"
    );
}
on_every_backend!(references_on_every_backend, a_document_named_by_another_is_not_deleted);

async fn a_crawled_catalogue_is_kept_with_its_peer_and_goes_with_it(store: &hanse_store::Store, backend: Backend) {
    let peers = &store.peers;
    let crawled = |did: &str, catalog: &str, at: i64| hanse_store::CrawledCatalog {
        did: did.to_owned(),
        address: format!("https://{did}/protocol/2025-1"),
        country: None,
        digest: "00".repeat(32),
        catalog: catalog.to_owned(),
        crawled_at: at,
        changed_at: at,
    };
    // Not for a peer the list does not know.
    assert!(!peers.keep_catalog(&crawled("did:web:nobody", "{}", 1)).await.unwrap(), "{backend:?}");
    assert!(peers.kept_catalogs().await.unwrap().is_empty());
    peers.seed_peer("did:web:north").await.unwrap();
    assert!(peers.keep_catalog(&crawled("did:web:north", r#"{"dataset":[]}"#, 1)).await.unwrap());
    let replaced = hanse_store::CrawledCatalog { country: Some("DE".into()), ..crawled("did:web:north", "{}", 2) };
    assert!(peers.keep_catalog(&replaced).await.unwrap(), "{backend:?}");
    peers.catalog_unchanged("did:web:north", 3).await.unwrap();
    let kept = peers.kept_catalog("did:web:north").await.unwrap().unwrap();
    assert_eq!(kept, hanse_store::CrawledCatalog { crawled_at: 3, ..replaced }, "{backend:?}");
    assert_eq!(peers.kept_catalogs().await.unwrap(), ["did:web:north"]);
    // It goes with its peer.
    peers.remove_peer("did:web:north").await.unwrap();
    assert!(peers.kept_catalog("did:web:north").await.unwrap().is_none(), "{backend:?}");
}
on_every_backend!(
    a_crawled_catalogue_is_kept_with_its_peer_and_goes_with_it_on_every_backend,
    a_crawled_catalogue_is_kept_with_its_peer_and_goes_with_it
);
