//! Named graphs that are replaced whole, in an oxigraph store that gives back what they no longer hold.
//!
//! oxigraph's in-memory store never forgets a quad: removing one only closes its version range, adding it again
//! opens another, and the text of every term stays in its dictionary. A catalogue whose datasets are edited, or a
//! broker that re-crawls its peers (whose blank nodes are new on every parse), would grow with every rewrite
//! (decision 0042). [`Graphs`] counts the quads writes remove; once they reach half of the quads that were live after
//! the last copy, a thread copies the live quads from a snapshot into a fresh store, replays the
//! graphs written meanwhile, and swaps the copy in. Readers keep the store they started on until they drop it.
//! A store on disk (RocksDB) deletes what it removes and is never copied.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use oxigraph::model::{GraphNameRef, NamedNode, Quad};
use oxigraph::store::{StorageError, Store};

/// Below this many quads removed since the last copy, no copy is made (small graphs cost little either way).
const MIN_DEAD: usize = 10_000;

/// A set of named graphs, each written whole.
#[derive(Clone)]
pub struct Graphs {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Store>,
    /// The folder of a store on disk.
    dir: Option<std::path::PathBuf>,
    /// Whether the store was let go of ([`Graphs::close`]): what is written since is not in it.
    closed: std::sync::atomic::AtomicBool,
    writes: Mutex<Writes>,
    /// Copies swapped in so far.
    copies: AtomicU64,
}

#[derive(Default)]
struct Writes {
    /// Quads live after the last copy (or the loads before the first), and inserted since.
    live: usize,
    /// Quads removed since the last copy: the store still holds each of them.
    dead: usize,
    /// While a copy runs: the graphs written after its snapshot, which it takes again before the swap.
    written: Option<HashSet<NamedNode>>,
}

impl Graphs {
    /// An empty in-memory store.
    pub fn in_memory() -> Graphs {
        Graphs::of(Store::new().expect("the in-memory store always opens"), None)
    }

    /// `store` as it is, never copied (a store on disk, in `dir`).
    pub fn on_disk(store: Store, dir: &std::path::Path) -> Graphs {
        Graphs::of(store, Some(dir.to_owned()))
    }

    /// The store on disk in `dir` (oxigraph's RocksDB store), as it was left: `setting` names the configuration key
    /// in errors. A folder another process (or another connector in this one) holds open is refused.
    pub fn open(dir: &std::path::Path, setting: &str) -> Result<Graphs, String> {
        #[cfg(feature = "rocksdb")]
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("{setting}: cannot create {}: {e}", dir.display()))?;
            let store = Store::open(dir).map_err(|e| format!("{setting}: cannot open {}: {e}", dir.display()))?;
            Ok(Graphs::on_disk(store, dir))
        }
        #[cfg(not(feature = "rocksdb"))]
        {
            Err(format!(
                "{setting} ({}) needs a hanse built with `--features rocksdb`; without it, leave it unset and the graph is \
                 held in memory",
                dir.display()
            ))
        }
    }

    /// The folder of a store on disk (kept across starts); `None` in memory, and once the store was let go of, so
    /// that nothing is recorded in the folder about writes that did not reach it.
    pub fn dir(&self) -> Option<&std::path::Path> {
        if self.inner.closed.load(Ordering::Acquire) { None } else { self.inner.dir.as_deref() }
    }

    /// Writes what the store holds through to its files (a store on disk), so that it survives a power loss.
    pub fn flush(&self) -> Result<(), StorageError> {
        #[cfg(feature = "rocksdb")]
        if self.dir().is_some() {
            return self.store().flush();
        }
        Ok(())
    }

    /// What a graph on disk recorded in `file` beside its store ([`Graphs::keep_state`]); `None` in memory, when there
    /// is no such file, or when it cannot be read as a `T`.
    pub fn state<T: serde::de::DeserializeOwned>(&self, file: &str) -> Option<T> {
        let text = std::fs::read(self.dir()?.join(file)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Records `state` in `file` beside a store on disk, after what it claims reached the store's files: the store
    /// is flushed first, then the file written aside, synced and renamed over the old one. Nothing in memory.
    pub fn keep_state<T: serde::Serialize>(&self, file: &str, state: &T) -> Result<(), String> {
        if self.dir().is_some() {
            self.flush().map_err(|e| e.to_string())?;
        }
        self.narrow_state(file, state)
    }

    /// Records `state` in `file` without flushing the store first: for a state that claims less than the one it
    /// replaces (a graph about to be rewritten taken out of it), which must be on disk before the rewrite is.
    pub fn narrow_state<T: serde::Serialize>(&self, file: &str, state: &T) -> Result<(), String> {
        let Some(dir) = self.dir() else { return Ok(()) };
        let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let partial = dir.join(format!("{file}.partial"));
        let mut written = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut written, &text).map_err(|e| e.to_string())?;
        written.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, dir.join(file)).map_err(|e| e.to_string())
    }

    /// Removes `file` beside a store on disk (gone already is fine): before the store changes in a way the file
    /// does not describe.
    pub fn forget_state(&self, file: &str) -> Result<(), std::io::Error> {
        match self.dir().map(|dir| std::fs::remove_file(dir.join(file))) {
            Some(Err(error)) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Removes every quad.
    pub fn clear(&self) -> Result<(), StorageError> {
        let mut writes = self.inner.lock();
        self.inner.store().clear()?;
        writes.dead += writes.live;
        writes.live = 0;
        if let Some(written) = &mut writes.written {
            // A copy running now took its snapshot before: it must take every graph again, i.e. none.
            written.clear();
        }
        Ok(())
    }

    /// The names of the named graphs held that start with `prefix`.
    pub fn names(&self, prefix: &str) -> Result<Vec<NamedNode>, StorageError> {
        let mut names = Vec::new();
        for name in self.store().named_graphs() {
            if let oxigraph::model::NamedOrBlankNode::NamedNode(name) = name?
                && name.as_str().starts_with(prefix)
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Lets go of the store (a store on disk is closed once the readers still holding it are done); what is written
    /// afterwards goes to an empty store in memory, where it is lost.
    pub fn close(&self) {
        let empty = Store::new().expect("the in-memory store always opens");
        let _writes = self.inner.lock();
        self.inner.closed.store(true, Ordering::Release);
        *self.inner.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = empty;
    }

    fn of(store: Store, dir: Option<std::path::PathBuf>) -> Graphs {
        Graphs {
            inner: Arc::new(Inner {
                current: RwLock::new(store),
                writes: Mutex::new(Writes::default()),
                dir,
                closed: std::sync::atomic::AtomicBool::new(false),
                copies: AtomicU64::new(0),
            }),
        }
    }

    /// The store to read: it stays whole for as long as the reader keeps it, whatever is swapped in meanwhile.
    pub fn store(&self) -> Store {
        self.inner.store()
    }

    /// Replaces graph `name` with `quads` (each in that graph) in one transaction; no quads removes it.
    pub fn replace(&self, name: &NamedNode, quads: &[Quad]) -> Result<(), StorageError> {
        debug_assert!(quads.iter().all(|q| q.graph_name.as_ref() == GraphNameRef::NamedNode(name.as_ref())));
        let mut writes = self.inner.lock();
        let store = self.inner.store();
        let removed = replace_in(&store, name, quads, self.inner.copying())?;
        writes.dead += removed;
        writes.live = (writes.live + quads.len()).saturating_sub(removed);
        if let Some(written) = &mut writes.written {
            written.insert(name.clone());
        } else if self.inner.copying() && writes.dead >= MIN_DEAD.max(writes.live / 2) {
            self.inner.start_copy(&mut writes, &store);
        }
        Ok(())
    }

    /// Adds many quads at once, in named graphs (while a graph is first built).
    pub fn load(&self, quads: impl IntoIterator<Item = Quad>) -> Result<(), StorageError> {
        let mut writes = self.inner.lock();
        let Writes { live, written, .. } = &mut *writes;
        let store = self.inner.store();
        let mut loader = store.bulk_loader();
        loader.load_quads(quads.into_iter().inspect(|quad| {
            *live += 1;
            // A copy running now has not seen these: it takes their graphs again before its swap.
            if let (Some(written), oxigraph::model::GraphName::NamedNode(name)) = (written.as_mut(), &quad.graph_name)
                && !written.contains(name)
            {
                written.insert(name.clone());
            }
        }))?;
        loader.commit()?;
        Ok(())
    }

    /// The quads held now (counts them: for diagnostics and benchmarks).
    pub fn len(&self) -> usize {
        self.store().len().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many copies have been swapped in.
    pub fn copies(&self) -> u64 {
        self.inner.copies.load(Ordering::Relaxed)
    }
}

/// Replaces graph `name` of `store` with `quads` in one transaction; answers how many quads it held (when `count`,
/// else 0).
fn replace_in(store: &Store, name: &NamedNode, quads: &[Quad], count: bool) -> Result<usize, StorageError> {
    let held = if count { store.quads_for_pattern(None, None, None, Some(name.as_ref().into())).count() } else { 0 };
    let mut transaction = store.start_transaction()?;
    transaction.remove_named_graph(name)?;
    transaction.extend(quads);
    transaction.commit()?;
    Ok(held)
}

impl Inner {
    /// Whether dead quads are reclaimed by copying (the in-memory store); a store on disk reclaims them itself.
    fn copying(&self) -> bool {
        self.dir.is_none()
    }

    fn store(&self) -> Store {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts copying `store` from a snapshot taken now, while the writes are held, so that every later write is
    /// one the copy replays.
    fn start_copy(self: &Arc<Self>, writes: &mut Writes, store: &Store) {
        let snapshot = store.iter();
        writes.written = Some(HashSet::new());
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("hanse-graph-copy".into()).spawn(move || {
            let started = std::time::Instant::now();
            match inner.copy(snapshot) {
                Ok(live) => {
                    let copies = inner.copies.fetch_add(1, Ordering::Relaxed) + 1;
                    let ms = started.elapsed().as_millis() as u64;
                    tracing::debug!(quads = live, ms, copies, "graph store copied");
                }
                Err(error) => {
                    inner.lock().written = None;
                    tracing::error!(%error, "copying the graph store failed; the old one stays");
                }
            }
        });
        if let Err(error) = spawned {
            writes.written = None;
            tracing::error!(%error, "cannot start copying the graph store");
        }
    }

    /// Copies the snapshot into a fresh store, replays the graphs written since, and swaps it in. Answers the quads
    /// it holds.
    fn copy(&self, snapshot: oxigraph::store::QuadIter<'static>) -> Result<usize, StorageError> {
        let fresh = Store::new()?;
        let mut live = 0usize;
        let mut loader = fresh.bulk_loader();
        loader.load_ok_quads::<_, StorageError>(snapshot.inspect(|_| live += 1))?;
        loader.commit()?;
        let mut writes = self.lock();
        let old = self.store();
        for name in writes.written.take().unwrap_or_default() {
            let quads = old
                .quads_for_pattern(None, None, None, Some(name.as_ref().into()))
                .collect::<Result<Vec<Quad>, _>>()?;
            let held = replace_in(&fresh, &name, &quads, true)?;
            live = live.saturating_sub(held) + quads.len();
        }
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        writes.live = live;
        writes.dead = 0;
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxigraph::model::{BlankNode, GraphName, Literal};

    /// Waits until no copy runs.
    fn settle(graphs: &Graphs) {
        while graphs.inner.lock().written.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn quads(graph: &NamedNode, n: usize, round: usize) -> Vec<Quad> {
        (0..n)
            .map(|i| {
                Quad::new(
                    BlankNode::default(),
                    NamedNode::new_unchecked(format!("urn:p:{i}")),
                    Literal::new_simple_literal(format!("{round}")),
                    GraphName::NamedNode(graph.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn rewritten_graphs_are_copied_into_a_fresh_store_and_keep_their_last_content() {
        let graphs = Graphs::in_memory();
        let names: Vec<NamedNode> = (0..4).map(|g| NamedNode::new_unchecked(format!("urn:g:{g}"))).collect();
        for name in &names {
            graphs.replace(name, &quads(name, 5_000, 0)).unwrap();
        }
        // A reader's store stays whole whatever is swapped in meanwhile.
        let reader = graphs.store();
        for round in 1..=20 {
            for name in &names {
                graphs.replace(name, &quads(name, 5_000, round)).unwrap();
            }
        }
        settle(&graphs);
        assert!(graphs.copies() >= 2, "{} copies", graphs.copies());
        assert_eq!(reader.len().unwrap(), 20_000);
        // Only the last round is held, in every graph, and the dead quads went with the old stores.
        let store = graphs.store();
        assert_eq!(store.len().unwrap(), 20_000);
        for name in &names {
            let values: HashSet<String> = store
                .quads_for_pattern(None, None, None, Some(name.as_ref().into()))
                .map(|q| q.unwrap().object.to_string())
                .collect();
            assert_eq!(values, HashSet::from(["\"20\"".to_owned()]), "{name}");
        }
        // A removed graph is gone from the copy too.
        graphs.replace(&names[0], &[]).unwrap();
        assert_eq!(graphs.len(), 15_000);
    }

    #[test]
    fn writes_made_while_a_copy_runs_are_in_the_store_swapped_in() {
        let graphs = Graphs::in_memory();
        let name = NamedNode::new_unchecked("urn:g:busy");
        let other = NamedNode::new_unchecked("urn:g:other");
        graphs.replace(&other, &quads(&other, 30_000, 0)).unwrap();
        let mut round = 0;
        // Keep writing until at least one copy has been swapped in while writes went on.
        while graphs.copies() < 3 {
            round += 1;
            graphs.replace(&name, &quads(&name, 2_000, round)).unwrap();
            if round % 2 == 0 {
                graphs.replace(&other, &quads(&other, 30_000, round)).unwrap();
            }
            assert!(round < 10_000, "no copy was swapped in");
        }
        settle(&graphs);
        let store = graphs.store();
        let last = |graph: &NamedNode| -> HashSet<String> {
            store
                .quads_for_pattern(None, None, None, Some(graph.as_ref().into()))
                .map(|q| q.unwrap().object.to_string())
                .collect()
        };
        assert_eq!(last(&name), HashSet::from([format!("\"{round}\"")]));
        assert_eq!(last(&other), HashSet::from([format!("\"{}\"", round - round % 2)]));
        assert_eq!(store.len().unwrap(), 32_000);
    }
}
