//! Providers' own algorithms as WebAssembly modules, run in an interpreter (decision 0048).
//!
//! An algorithm is a module that exports `site` and, if it concludes at the orchestrator, `finish`; it imports only
//! what the host offers under `hanse` (the [guest interface](#the-guest-interface) below) and nothing else: no clock,
//! no network, no files, no randomness. It runs under a fuel limit (WebAssembly instructions, counted by the
//! interpreter) and a memory limit (bytes of linear memory, enforced when the module grows it); passing either stops it
//! with [`JobError::Sandbox`].
//!
//! The module never returns data itself. At a site it puts rows into cells (`assign`) and adds one value per row and
//! metric (`measure`); the host counts the rows, sums the values and releases the cells through the same disclosure
//! control as `aggregate` ([`disclosure::release_grouped`]: small cells, complementary cells, dominance). The
//! orchestrator sums the sites' released cells ([`pool`]) and, where the module exports `finish`, runs it over the
//! pooled cells to compute its results (`result`), seeing nothing a site did not release.
//!
//! # The guest interface
//!
//! Imports, module `hanse` (`i32` indices, `f64` values):
//!
//! | function | where | answers |
//! |---|---|---|
//! | `rows() -> i32` | site | the table's rows |
//! | `columns() -> i32` | site | the columns the job names (`columns`), in that order |
//! | `levels(c) -> i32` | site | column `c`'s levels (categorical, boolean), 0 for a numeric column |
//! | `value(c, r) -> f64` | site | column `c` of row `r`: a number, a level's index, a date's day number; NaN when missing |
//! | `parameters() -> i32`, `parameter(i) -> f64` | both | the job's `values` |
//! | `cells() -> i32` | both | the job's `cells` |
//! | `assign(r, cell)` | site | puts row `r` into `cell` (once per row) |
//! | `measure(r, m, v)` | site | adds finite `v` to metric `m` of row `r`'s cell (once per row and metric) |
//! | `count(cell) -> f64` | finish | the pooled row count of `cell`; NaN where a site suppressed it |
//! | `sum(cell, m) -> f64` | finish | the pooled sum of metric `m` in `cell`; NaN where suppressed |
//! | `result(i, v)` | finish | sets result `i` (named by the algorithm's manifest) |
//! | `exp(x) -> f64`, `ln(x) -> f64` | both | the functions WebAssembly lacks |
//!
//! An error the host raises never carries a value the module chose: a module cannot leak through error messages.

use serde_json::{Map, Value as Json, json};
use wasmi::{Caller, Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, TrapCode};

use super::analysis::{Cell, Grouped, JobError, Metric};
use super::disclosure::{self, Limits};
use super::table::Table;

/// The most metrics one algorithm may measure.
pub const MOST_METRICS: usize = 16;
/// The most results `finish` may set.
pub const MOST_RESULTS: usize = 64;

/// What a module may use: fuel (WebAssembly instructions, about) and linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub fuel: u64,
    pub memory_bytes: usize,
}

/// What an algorithm declares of itself beside its code (its manifest): the names of its metrics and results, and
/// whether it trains (its `finish` sets the next round's values rather than named results).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    pub metrics: Vec<String>,
    pub results: Vec<String>,
    pub trains: bool,
}

/// A job's parameters for an algorithm: the columns it reads, the numbers it is given and the cells it fills.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<f64>,
    pub cells: usize,
    /// Rounds of a training algorithm: each round's `finish` gives the next round's values.
    #[serde(default = "one")]
    pub rounds: u32,
    /// The algorithm, by digest: read by whoever admits it, not here.
    #[serde(default)]
    pub algorithm: Option<String>,
}

fn one() -> u32 {
    1
}

impl Parameters {
    pub fn from_json(value: &Json) -> Result<Parameters, JobError> {
        serde_json::from_value(value.clone()).map_err(|e| JobError::Invalid(format!("parameters: {e}")))
    }
}

/// A compiled module, checked: it imports only what the host offers and exports `site`.
#[derive(Clone)]
pub struct Algorithm {
    engine: Engine,
    module: Module,
    finishes: bool,
}

impl std::fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Algorithm").field("finishes", &self.finishes).finish_non_exhaustive()
    }
}

/// The host functions, by name and what they take and give.
const IMPORTS: &[&str] = &[
    "rows",
    "columns",
    "levels",
    "value",
    "parameters",
    "parameter",
    "cells",
    "assign",
    "measure",
    "count",
    "sum",
    "result",
    "exp",
    "ln",
];

impl Algorithm {
    /// Compiles a module from its binary or text form.
    pub fn compile(code: &[u8]) -> Result<Algorithm, JobError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, code)
            .map_err(|e| JobError::Invalid(format!("the algorithm is not a valid WebAssembly module: {e}")))?;
        for import in module.imports() {
            if import.module() != "hanse" || !IMPORTS.contains(&import.name()) {
                return Err(JobError::Invalid(format!(
                    "the algorithm imports `{}.{}`, which the sandbox does not offer (it offers hanse.{})",
                    import.module(),
                    import.name(),
                    IMPORTS.join(", hanse.")
                )));
            }
        }
        let exported = |name: &str| module.exports().any(|e| e.name() == name && e.ty().func().is_some());
        if !exported("site") {
            return Err(JobError::Invalid("the algorithm exports no function `site`".into()));
        }
        let finishes = exported("finish");
        Ok(Algorithm { engine, module, finishes })
    }

    /// Whether the algorithm concludes at the orchestrator (exports `finish`).
    pub fn finishes(&self) -> bool {
        self.finishes
    }
}

/// The state the host functions see.
struct Host {
    limits: StoreLimits,
    parameters: Vec<f64>,
    cells: usize,
    phase: Phase,
}

enum Phase {
    Site(Box<Site>),
    Finish { pooled: Vec<PooledCell>, metrics: usize, results: Vec<Option<f64>> },
}

/// A site's run: the job's columns, each row's cell and what was measured.
struct Site {
    columns: Vec<Vec<f64>>,
    levels: Vec<usize>,
    rows: usize,
    metrics: usize,
    /// Each row's cell, `u32::MAX` while unassigned.
    cell_of: Vec<u32>,
    /// Per row, a bit per metric measured.
    measured: Vec<u16>,
    cells: Vec<Cell>,
}

/// A cell of the pooled result: its row count and metric sums, `None` where some site suppressed it.
#[derive(Debug, Clone, PartialEq)]
pub struct PooledCell {
    pub n: Option<f64>,
    pub sums: Vec<Option<f64>>,
}

/// A host function's refusal: stops the module with a message of the host's own words.
fn stop(message: &'static str) -> wasmi::Error {
    wasmi::Error::new(message)
}

fn index(i: i32, len: usize, what: &'static str) -> Result<usize, wasmi::Error> {
    usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| stop(what))
}

fn site<'a>(caller: &'a Caller<'_, Host>) -> Result<&'a Site, wasmi::Error> {
    match &caller.data().phase {
        Phase::Site(site) => Ok(site),
        Phase::Finish { .. } => Err(stop("the table is read at a site, not in `finish`")),
    }
}

fn site_mut<'a>(caller: &'a mut Caller<'_, Host>) -> Result<&'a mut Site, wasmi::Error> {
    match &mut caller.data_mut().phase {
        Phase::Site(site) => Ok(site),
        Phase::Finish { .. } => Err(stop("rows are assigned and measured at a site, not in `finish`")),
    }
}

fn pooled<'a>(caller: &'a Caller<'_, Host>, cell: i32) -> Result<(&'a PooledCell, usize), wasmi::Error> {
    match &caller.data().phase {
        Phase::Finish { pooled, metrics, .. } => {
            Ok((&pooled[index(cell, pooled.len(), "count/sum: no such cell")?], *metrics))
        }
        Phase::Site(_) => Err(stop("pooled cells are read in `finish`, not at a site")),
    }
}

fn linker(engine: &Engine) -> Result<Linker<Host>, JobError> {
    let mut linker = Linker::<Host>::new(engine);
    let defined = (|| -> Result<(), wasmi::errors::LinkerError> {
        linker.func_wrap("hanse", "rows", |caller: Caller<'_, Host>| Ok(site(&caller)?.rows as i32))?;
        linker.func_wrap("hanse", "columns", |caller: Caller<'_, Host>| Ok(site(&caller)?.columns.len() as i32))?;
        linker.func_wrap("hanse", "levels", |caller: Caller<'_, Host>, c: i32| {
            let site = site(&caller)?;
            Ok(site.levels[index(c, site.levels.len(), "levels: no such column")?] as i32)
        })?;
        linker.func_wrap("hanse", "value", |caller: Caller<'_, Host>, c: i32, r: i32| {
            let site = site(&caller)?;
            let column = &site.columns[index(c, site.columns.len(), "value: no such column")?];
            Ok(column[index(r, site.rows, "value: no such row")?])
        })?;
        linker.func_wrap("hanse", "parameters", |caller: Caller<'_, Host>| caller.data().parameters.len() as i32)?;
        linker.func_wrap("hanse", "parameter", |caller: Caller<'_, Host>, i: i32| {
            let parameters = &caller.data().parameters;
            Ok(parameters[index(i, parameters.len(), "parameter: no such parameter")?])
        })?;
        linker.func_wrap("hanse", "cells", |caller: Caller<'_, Host>| caller.data().cells as i32)?;
        linker.func_wrap("hanse", "assign", |mut caller: Caller<'_, Host>, r: i32, cell: i32| {
            let cells = caller.data().cells;
            let site = site_mut(&mut caller)?;
            let (r, cell) = (index(r, site.rows, "assign: no such row")?, index(cell, cells, "assign: no such cell")?);
            if site.cell_of[r] != u32::MAX {
                return Err(stop("assign: a row was assigned twice"));
            }
            site.cell_of[r] = cell as u32;
            site.cells[cell].n += 1;
            Ok(())
        })?;
        linker.func_wrap("hanse", "measure", |mut caller: Caller<'_, Host>, r: i32, m: i32, v: f64| {
            let site = site_mut(&mut caller)?;
            let (r, m) =
                (index(r, site.rows, "measure: no such row")?, index(m, site.metrics, "measure: no such metric")?);
            let cell = site.cell_of[r];
            if cell == u32::MAX {
                return Err(stop("measure: a row is measured after it is assigned to a cell"));
            }
            if site.measured[r] & (1 << m) != 0 {
                return Err(stop("measure: a row was measured twice for one metric"));
            }
            if !v.is_finite() {
                return Err(stop("measure: a value is not a finite number"));
            }
            site.measured[r] |= 1 << m;
            let cell = &mut site.cells[cell as usize];
            cell.sums[m] += v;
            cell.squares[m] += v * v;
            cell.absolutes[m] += v.abs();
            cell.largest[m] = cell.largest[m].max(v.abs());
            Ok(())
        })?;
        linker.func_wrap("hanse", "count", |caller: Caller<'_, Host>, cell: i32| {
            Ok(pooled(&caller, cell)?.0.n.unwrap_or(f64::NAN))
        })?;
        linker.func_wrap("hanse", "sum", |caller: Caller<'_, Host>, cell: i32, m: i32| {
            let (cell, metrics) = pooled(&caller, cell)?;
            Ok(cell.sums[index(m, metrics, "sum: no such metric")?].unwrap_or(f64::NAN))
        })?;
        linker.func_wrap("hanse", "result", |mut caller: Caller<'_, Host>, i: i32, v: f64| {
            match &mut caller.data_mut().phase {
                Phase::Finish { results, .. } => {
                    let at = index(i, results.len(), "result: the manifest names no such result")?;
                    results[at] = Some(v);
                    Ok(())
                }
                Phase::Site(_) => Err(stop("results are set in `finish`, at the orchestrator, not at a site")),
            }
        })?;
        linker.func_wrap("hanse", "exp", |x: f64| x.exp())?;
        linker.func_wrap("hanse", "ln", |x: f64| x.ln())?;
        Ok(())
    })();
    defined.map_err(|e| JobError::Invalid(format!("the sandbox cannot be set up: {e}")))?;
    Ok(linker)
}

/// Runs export `name` of `algorithm` with `host`; answers the host's state after it.
fn run(algorithm: &Algorithm, host: Host, name: &str, bounds: &Bounds) -> Result<Host, JobError> {
    let mut store = Store::new(&algorithm.engine, host);
    store.limiter(|host| &mut host.limits);
    store.set_fuel(bounds.fuel).map_err(|e| JobError::Sandbox(format!("fuel: {e}")))?;
    let linker = linker(&algorithm.engine)?;
    let stopped = |error: wasmi::Error| -> JobError {
        let mib = bounds.memory_bytes >> 20;
        match error.as_trap_code() {
            Some(TrapCode::OutOfFuel) => JobError::Sandbox(format!(
                "the algorithm used all its fuel ({} instructions) and was stopped",
                bounds.fuel
            )),
            Some(TrapCode::GrowthOperationLimited) => {
                JobError::Sandbox(format!("the algorithm asked for more than its memory limit of {mib} MiB"))
            }
            Some(code) => JobError::Sandbox(format!("the algorithm stopped: {code}")),
            None if error.to_string().contains("limit") => {
                JobError::Sandbox(format!("the algorithm needs more than its memory limit of {mib} MiB"))
            }
            None => JobError::Sandbox(format!("the algorithm stopped: {error}")),
        }
    };
    let instance = linker.instantiate_and_start(&mut store, &algorithm.module).map_err(stopped)?;
    let entry = instance
        .get_typed_func::<(), ()>(&store, name)
        .map_err(|_| JobError::Invalid(format!("the algorithm's `{name}` must take and answer nothing")))?;
    entry.call(&mut store, ()).map_err(stopped)?;
    Ok(store.into_data())
}

fn limits(bounds: &Bounds) -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(bounds.memory_bytes).tables(4).trap_on_grow_failure(true).build()
}

/// A site's step: runs `site` over `table` and answers the cells released under `limits` (the same form as
/// `aggregate`'s result, with one dimension `cell`).
pub fn site_step(
    algorithm: &Algorithm,
    table: &Table,
    parameters: &Parameters,
    declared: &Declared,
    limits: &Limits,
    bounds: &Bounds,
) -> Result<Json, JobError> {
    site_round(algorithm, table, parameters, &parameters.values, declared, limits, bounds)
}

/// [`site_step`] of a training round, with that round's `values`.
pub fn site_round(
    algorithm: &Algorithm,
    table: &Table,
    parameters: &Parameters,
    values: &[f64],
    declared: &Declared,
    limits: &Limits,
    bounds: &Bounds,
) -> Result<Json, JobError> {
    if parameters.cells == 0 || parameters.cells > limits.max_cells {
        return Err(JobError::Invalid(format!(
            "cells: {} is not between 1 and the limit of {}",
            parameters.cells, limits.max_cells
        )));
    }
    if declared.metrics.len() > MOST_METRICS {
        return Err(JobError::Invalid(format!("an algorithm measures at most {MOST_METRICS} metrics")));
    }
    let mut columns = Vec::with_capacity(parameters.columns.len());
    let mut levels = Vec::with_capacity(parameters.columns.len());
    for name in &parameters.columns {
        let (at, column) = super::analysis::column(table, name, "columns")?;
        columns.push(table.values[at].clone());
        levels.push(column.level_names().len() * usize::from(column.kind.is_discrete()));
    }
    let metrics = declared.metrics.len();
    let empty = Cell {
        levels: vec![0],
        n: 0,
        sums: vec![0.0; metrics],
        squares: vec![0.0; metrics],
        absolutes: vec![0.0; metrics],
        largest: vec![0.0; metrics],
    };
    let cells = (0..parameters.cells).map(|c| Cell { levels: vec![c], ..empty.clone() }).collect();
    let host = Host {
        limits: self::limits(bounds),
        parameters: values.to_vec(),
        cells: parameters.cells,
        phase: Phase::Site(Box::new(Site {
            columns,
            levels,
            rows: table.rows,
            metrics,
            cell_of: vec![u32::MAX; table.rows],
            measured: vec![0; table.rows],
            cells,
        })),
    };
    let Phase::Site(site) = run(algorithm, host, "site", bounds)?.phase else { unreachable!("a site stays a site") };
    let mut total = empty;
    for cell in &site.cells {
        total.n += cell.n;
        for m in 0..metrics {
            total.sums[m] += cell.sums[m];
            total.squares[m] += cell.squares[m];
            total.absolutes[m] += cell.absolutes[m];
            total.largest[m] = total.largest[m].max(cell.largest[m]);
        }
    }
    let grouped = Grouped {
        dimensions: vec![("cell".into(), (0..parameters.cells).map(|c| c.to_string()).collect())],
        metrics: declared
            .metrics
            .iter()
            .map(|name| Metric { column: name.clone(), statistics: vec!["count".into(), "sum".into(), "mean".into()] })
            .collect(),
        cells: site.cells,
        total,
    };
    Ok(disclosure::release_grouped(&grouped, limits, false))
}

/// The sites' released cells summed: a cell's count and each metric's sum, `None` where any site withheld it.
pub fn pool(released: &[Json], cells: usize, declared: &Declared) -> Result<Vec<PooledCell>, JobError> {
    let mut pooled = vec![PooledCell { n: Some(0.0), sums: vec![Some(0.0); declared.metrics.len()] }; cells];
    for site in released {
        let listed = site["cells"].as_array().filter(|listed| listed.len() == cells).ok_or_else(|| {
            JobError::Invalid(format!(
                "a site released {} cells, not {cells}",
                site["cells"].as_array().map_or(0, Vec::len)
            ))
        })?;
        for (cell, entry) in pooled.iter_mut().zip(listed) {
            cell.n = cell.n.zip(entry["n"].as_f64()).map(|(a, b)| a + b);
            for (m, name) in declared.metrics.iter().enumerate() {
                let sum = entry["metrics"][name]["sum"].as_f64().or_else(|| entry["n"].as_f64().filter(|n| *n == 0.0));
                cell.sums[m] = cell.sums[m].zip(sum).map(|(a, b)| a + b);
            }
        }
    }
    Ok(pooled)
}

/// The orchestrator's conclusion of a round: runs `finish` over the pooled cells with the round's `values`. Answers
/// what it set: the manifest's results in order or, for a training algorithm, the next round's values (`None` where
/// it set nothing finite).
pub fn finish(
    algorithm: &Algorithm,
    pooled: Vec<PooledCell>,
    values: &[f64],
    declared: &Declared,
    bounds: &Bounds,
) -> Result<Vec<Option<f64>>, JobError> {
    let count = if declared.trains { values.len() } else { declared.results.len() };
    if count > MOST_RESULTS {
        return Err(JobError::Invalid(format!("an algorithm sets at most {MOST_RESULTS} results or values")));
    }
    let host = Host {
        limits: limits(bounds),
        parameters: values.to_vec(),
        cells: pooled.len(),
        phase: Phase::Finish { pooled, metrics: declared.metrics.len(), results: vec![None; count] },
    };
    let Phase::Finish { results, .. } = run(algorithm, host, "finish", bounds)?.phase else {
        unreachable!("a finish stays a finish")
    };
    Ok(results.into_iter().map(|v| v.filter(|v| v.is_finite())).collect())
}

/// What [`finish`] set, by the manifest's result names (`null` where unset or withheld).
pub fn named(declared: &Declared, results: &[Option<f64>]) -> Map<String, Json> {
    declared.results.iter().cloned().zip(results.iter().map(|v| json!(v))).collect()
}

/// The pooled cells as a result: each cell's count and metric sums (`null` where withheld).
pub fn pooled_json(pooled: &[PooledCell], declared: &Declared) -> Json {
    Json::Array(
        pooled
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let sums: Map<String, Json> =
                    declared.metrics.iter().cloned().zip(cell.sums.iter().map(|s| json!(s))).collect();
                json!({"cell": c, "n": cell.n, "sums": sums})
            })
            .collect(),
    )
}

/// The example algorithms that come with Hanse, in WebAssembly text, with what their manifests declare.
pub mod examples {
    use super::Declared;

    /// Validation of a logistic model: AUC and calibration across sites (`algorithms/validation.wat`).
    pub const VALIDATION: &str = include_str!("../algorithms/validation.wat");
    /// A k-anonymous histogram of one numeric column (`algorithms/histogram.wat`).
    pub const HISTOGRAM: &str = include_str!("../algorithms/histogram.wat");
    /// Logistic regression trained by gradient steps across sites (`algorithms/logistic.wat`).
    pub const LOGISTIC: &str = include_str!("../algorithms/logistic.wat");

    /// The metrics and results of [`VALIDATION`].
    pub fn validation() -> Declared {
        Declared {
            metrics: vec!["outcome".into(), "probability".into()],
            results: ["auc", "observed", "expected", "observedToExpected", "rows"].map(String::from).to_vec(),
            trains: false,
        }
    }

    /// [`HISTOGRAM`] measures nothing and sets no results: its bins are its result.
    pub fn histogram() -> Declared {
        Declared::default()
    }

    /// What [`VALIDATION`] concludes, computed in Rust on all the rows at once: the reference that tests and benchmarks
    /// hold the module's federated result to.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Validation {
        pub auc: f64,
        pub observed: f64,
        pub expected: f64,
    }

    /// [`Validation`] of the logistic `model` (intercept, then one coefficient per term after the outcome) over
    /// `tables` pooled, with the outcome and terms named by `columns` and probabilities in `cells` cells.
    pub fn pooled_validation(
        tables: &[crate::table::Table],
        columns: &[&str],
        model: &[f64],
        cells: usize,
    ) -> Validation {
        let (mut events, mut others, mut expected) = (vec![0.0; cells], vec![0.0; cells], 0.0);
        for table in tables {
            let at: Vec<usize> =
                columns.iter().map(|c| table.schema.column(c).expect("a column of the table").0).collect();
            for r in 0..table.rows {
                let y = table.values[at[0]][r];
                let mut eta = model[0];
                for j in 1..columns.len() {
                    eta += model[j] * table.values[at[j]][r];
                }
                let p = 1.0 / (1.0 + (-eta).exp());
                if y.is_nan() || p.is_nan() {
                    continue;
                }
                let cell = ((p * cells as f64).floor() as usize).min(cells - 1);
                match y == 1.0 {
                    true => events[cell] += 1.0,
                    false => others[cell] += 1.0,
                }
                expected += p;
            }
        }
        let (mut pairs, mut below) = (0.0, 0.0);
        for c in 0..cells {
            pairs += events[c] * (below + 0.5 * others[c]);
            below += others[c];
        }
        let observed: f64 = events.iter().sum();
        Validation { auc: pairs / (observed * below), observed, expected }
    }

    /// [`LOGISTIC`] measures the gradient of each coefficient and trains.
    pub fn logistic() -> Declared {
        Declared { metrics: (0..16).map(|j| format!("gradient{j}")).collect(), results: Vec::new(), trains: true }
    }
}
