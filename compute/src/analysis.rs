//! The job templates as pure functions of a table and typed parameters: `aggregate`, `crosstab`, `glm` (one Newton
//! round: score vector and information matrix at the given coefficients) and `fedavg` (local SGD epochs from the given
//! weights). They compute; they do not decide what may be released — [`super::disclosure`] does, in the host code
//! that calls them.
//!
//! Rows with a missing value in any column a job uses are left out (complete-case analysis); every result says how
//! many rows it used.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::table::{Column, Kind, Table};

/// The templates.
pub const TEMPLATES: [&str; 5] = ["aggregate", "crosstab", "glm", "fedavg", "module"];
/// The statistics `aggregate` computes. Nothing that releases a single row (min, max, median, quantiles) exists.
pub const STATISTICS: [&str; 5] = ["count", "sum", "mean", "variance", "sd"];
/// Rows between two checks of the deadline.
const CHECK_EVERY: usize = 1 << 14;

/// Why a job cannot run or stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The parameters do not fit the template or the table; the message names the parameter.
    #[error("{0}")]
    Invalid(String),
    /// Disclosure control forbids the job on these rows; the message names the rule.
    #[error("{0}")]
    Disclosure(String),
    /// The time limit passed.
    #[error("the job exceeded its time limit of {0} s")]
    TimeLimit(u64),
    /// The job held more memory than its limit (MiB).
    #[error("the job exceeded its memory limit of {0} MiB")]
    MemoryLimit(u64),
    /// A provider's algorithm was stopped by its sandbox (fuel, memory, a trap); the message says which.
    #[error("{0}")]
    Sandbox(String),
}

/// Where a job must stop: checked every few thousand rows.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub at: Instant,
    pub seconds: u64,
    /// A flag that whoever meters the job's memory raises once the job holds more than the limit (MiB) beside it.
    pub memory: Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, u64)>,
}

impl Deadline {
    /// A deadline `seconds` after `now`, with no memory meter.
    pub fn after(now: Instant, seconds: u64) -> Deadline {
        Deadline { at: now + std::time::Duration::from_secs(seconds), seconds, memory: None }
    }

    /// A deadline `seconds` after `now` for a job that may hold `megabytes`, with a flag of its own for the meter.
    pub fn metered(now: Instant, seconds: u64, megabytes: u64) -> Deadline {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        Deadline { memory: Some((flag, megabytes)), ..Deadline::after(now, seconds) }
    }

    /// Refuses, before it is allocated, a working array of `bytes` that alone would pass the job's memory limit (an
    /// allocation that large could fail and stop the process before any meter sees it). A job without a limit is not
    /// bounded here.
    pub fn admit(&self, bytes: usize) -> Result<(), JobError> {
        match &self.memory {
            Some((_, megabytes)) if bytes as u64 > megabytes.saturating_mul(1 << 20) => {
                Err(JobError::MemoryLimit(*megabytes))
            }
            _ => Ok(()),
        }
    }

    /// Whether the job must stop now: its memory flag is raised, or (checked every few thousand rows) its time is up.
    pub fn check(&self, row: usize) -> Result<(), JobError> {
        if let Some((exceeded, megabytes)) = &self.memory
            && exceeded.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(JobError::MemoryLimit(*megabytes));
        }
        if row.is_multiple_of(CHECK_EVERY) && Instant::now() > self.at {
            return Err(JobError::TimeLimit(self.seconds));
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> JobError {
    JobError::Invalid(message.into())
}

/// A row filter: `{"column": "age", "op": "gte", "value": 18}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub op: String,
    pub value: Json,
}

/// An analysable column by name, or an error naming the parameter.
pub(crate) fn column<'t>(table: &'t Table, name: &str, parameter: &str) -> Result<(usize, &'t Column), JobError> {
    match table.schema.column(name) {
        Some((at, column)) if column.analysable => Ok((at, column)),
        Some(_) => Err(invalid(format!("{parameter}: column `{name}` may not be used in jobs"))),
        None => Err(invalid(format!("{parameter}: there is no column `{name}`"))),
    }
}

/// A compiled filter: a column and a test of its values.
struct Test {
    at: usize,
    op: Op,
}

enum Op {
    Compare(fn(f64, f64) -> bool, f64),
    In(Vec<f64>),
}

fn compile(table: &Table, filters: &[Filter]) -> Result<Vec<Test>, JobError> {
    filters
        .iter()
        .enumerate()
        .map(|(i, filter)| {
            let parameter = format!("filters[{i}]");
            let (at, column) = column(table, &filter.column, &parameter)?;
            let value = |v: &Json| column.value_of(v).map_err(|e| invalid(format!("{parameter}: {e}")));
            let compare: Option<fn(f64, f64) -> bool> = match filter.op.as_str() {
                "eq" => Some(|a, b| a == b),
                "ne" => Some(|a, b| a != b),
                "lt" => Some(|a, b| a < b),
                "lte" => Some(|a, b| a <= b),
                "gt" => Some(|a, b| a > b),
                "gte" => Some(|a, b| a >= b),
                "in" => None,
                other => {
                    return Err(invalid(format!("{parameter}: unknown op `{other}` (eq, ne, lt, lte, gt, gte, in)")));
                }
            };
            let op = match compare {
                Some(_) if column.kind.is_discrete() && !matches!(filter.op.as_str(), "eq" | "ne") => {
                    return Err(invalid(format!("{parameter}: `{}` is not ordered; use eq, ne or in", column.name)));
                }
                Some(compare) => Op::Compare(compare, value(&filter.value)?),
                None => {
                    let values =
                        filter.value.as_array().ok_or_else(|| invalid(format!("{parameter}: `in` needs a list")))?;
                    Op::In(values.iter().map(value).collect::<Result<_, _>>()?)
                }
            };
            Ok(Test { at, op })
        })
        .collect()
}

/// The rows (in order) that pass every filter: what an app's query reads.
pub fn matching_rows(table: &Table, filters: &[Filter], deadline: &Deadline) -> Result<Vec<u32>, JobError> {
    select(table, filters, &[], deadline)
}

/// The rows that pass every filter and have a value in every used column.
fn select(table: &Table, filters: &[Filter], used: &[usize], deadline: &Deadline) -> Result<Vec<u32>, JobError> {
    let tests = compile(table, filters)?;
    let mut rows = Vec::with_capacity(table.rows);
    'rows: for row in 0..table.rows {
        deadline.check(row)?;
        for &at in used {
            if table.values[at][row].is_nan() {
                continue 'rows;
            }
        }
        for test in &tests {
            let value = table.values[test.at][row];
            let pass = !value.is_nan()
                && match &test.op {
                    Op::Compare(compare, bound) => compare(value, *bound),
                    Op::In(values) => values.contains(&value),
                };
            if !pass {
                continue 'rows;
            }
        }
        rows.push(row as u32);
    }
    Ok(rows)
}

/// What `aggregate` is asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AggregateParameters {
    pub filters: Vec<Filter>,
    pub group_by: Vec<String>,
    pub metrics: Vec<Metric>,
}

/// A numeric column and the statistics wanted of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub column: String,
    #[serde(default = "default_statistics")]
    pub statistics: Vec<String>,
}

fn default_statistics() -> Vec<String> {
    vec!["count".into(), "mean".into(), "sd".into()]
}

/// One cell of a grouped computation before disclosure control: its group's level indices, row count and, per
/// metric, sum, sum of squares and largest absolute contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub levels: Vec<usize>,
    pub n: u64,
    pub sums: Vec<f64>,
    pub squares: Vec<f64>,
    pub absolutes: Vec<f64>,
    pub largest: Vec<f64>,
}

/// The raw result of `aggregate`: every group combination (also empty ones) and the total.
#[derive(Debug, Clone)]
pub struct Grouped {
    pub dimensions: Vec<(String, Vec<String>)>,
    pub metrics: Vec<Metric>,
    pub cells: Vec<Cell>,
    pub total: Cell,
}

/// The discrete columns of a grouping with their levels; the product of their level counts is at most `max_cells`.
fn dimensions(
    table: &Table,
    names: &[String],
    parameter: &str,
    max_cells: usize,
) -> Result<Vec<(usize, Column)>, JobError> {
    let mut out = Vec::new();
    let mut cells = 1usize;
    for name in names {
        let (at, column) = column(table, name, parameter)?;
        if !column.kind.is_discrete() {
            return Err(invalid(format!(
                "{parameter}: `{name}` is {}; group by boolean or categorical columns",
                column.kind.name()
            )));
        }
        cells = cells.saturating_mul(column.level_names().len());
        out.push((at, column.clone()));
    }
    if cells > max_cells {
        return Err(invalid(format!("{parameter}: {cells} cells exceed the limit of {max_cells}")));
    }
    Ok(out)
}

fn cell_index(table: &Table, dimensions: &[(usize, Column)], row: usize) -> usize {
    dimensions
        .iter()
        .fold(0, |index, (at, column)| index * column.level_names().len() + table.values[*at][row] as usize)
}

fn all_levels(dimensions: &[(usize, Column)]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for (_, column) in dimensions {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..column.level_names().len()).map(move |level| {
                    let mut next = prefix.clone();
                    next.push(level);
                    next
                })
            })
            .collect();
    }
    out
}

fn empty_cell(levels: Vec<usize>, metrics: usize) -> Cell {
    let zeros = vec![0.0; metrics];
    Cell { levels, n: 0, sums: zeros.clone(), squares: zeros.clone(), absolutes: zeros.clone(), largest: zeros }
}

fn add(cell: &mut Cell, values: &[f64]) {
    cell.n += 1;
    for (m, &x) in values.iter().enumerate() {
        cell.sums[m] += x;
        cell.squares[m] += x * x;
        cell.absolutes[m] += x.abs();
        cell.largest[m] = cell.largest[m].max(x.abs());
    }
}

/// `aggregate`: counts and sums per group.
pub fn aggregate(
    table: &Table,
    parameters: &AggregateParameters,
    max_cells: usize,
    deadline: &Deadline,
) -> Result<Grouped, JobError> {
    grouped(table, parameters, "groupBy", max_cells, deadline)
}

/// Counts and sums per group; `grouping` names the parameter listing the group columns in messages.
fn grouped(
    table: &Table,
    parameters: &AggregateParameters,
    grouping: &str,
    max_cells: usize,
    deadline: &Deadline,
) -> Result<Grouped, JobError> {
    let dimensions = dimensions(table, &parameters.group_by, grouping, max_cells)?;
    let mut metric_columns = Vec::new();
    for (i, metric) in parameters.metrics.iter().enumerate() {
        let parameter = format!("metrics[{i}]");
        let (at, column) = column(table, &metric.column, &parameter)?;
        if !matches!(column.kind, Kind::Integer | Kind::Float | Kind::Boolean) {
            return Err(invalid(format!(
                "{parameter}: `{}` is {}; metrics need numbers",
                column.name,
                column.kind.name()
            )));
        }
        if let Some(unknown) = metric.statistics.iter().find(|s| !STATISTICS.contains(&s.as_str())) {
            return Err(invalid(format!(
                "{parameter}: `{unknown}` is not offered (count, sum, mean, variance, sd); Hanse never releases a statistic of a single row"
            )));
        }
        metric_columns.push(at);
    }
    let used: Vec<usize> = dimensions.iter().map(|(at, _)| *at).chain(metric_columns.iter().copied()).collect();
    let rows = select(table, &parameters.filters, &used, deadline)?;
    let mut cells: Vec<Cell> =
        all_levels(&dimensions).into_iter().map(|levels| empty_cell(levels, metric_columns.len())).collect();
    let mut total = empty_cell(Vec::new(), metric_columns.len());
    let mut values = vec![0.0; metric_columns.len()];
    for (i, &row) in rows.iter().enumerate() {
        deadline.check(i)?;
        let row = row as usize;
        for (value, &at) in values.iter_mut().zip(&metric_columns) {
            *value = table.values[at][row];
        }
        add(&mut cells[cell_index(table, &dimensions, row)], &values);
        add(&mut total, &values);
    }
    Ok(Grouped {
        dimensions: dimensions.into_iter().map(|(_, c)| (c.name.clone(), c.level_names())).collect(),
        metrics: parameters.metrics.clone(),
        cells,
        total,
    })
}

/// What `crosstab` is asked: two or three discrete columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CrosstabParameters {
    pub filters: Vec<Filter>,
    pub columns: Vec<String>,
}

/// `crosstab`: the counts of every level combination (no metrics).
pub fn crosstab(
    table: &Table,
    parameters: &CrosstabParameters,
    max_cells: usize,
    deadline: &Deadline,
) -> Result<Grouped, JobError> {
    if !(2..=3).contains(&parameters.columns.len()) {
        return Err(invalid("columns: a cross-tabulation has two or three columns"));
    }
    let aggregate_parameters = AggregateParameters {
        filters: parameters.filters.clone(),
        group_by: parameters.columns.clone(),
        metrics: vec![],
    };
    grouped(table, &aggregate_parameters, "columns", max_cells, deadline)
}

/// The model families of `glm` and `fedavg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Logistic,
    Linear,
    Poisson,
}

/// What `glm` (and `fedavg`) are asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelParameters {
    pub family: Family,
    pub outcome: String,
    pub covariates: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// `fedavg`: the SGD step size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// `fedavg`: passes over the local rows per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_epochs: Option<u32>,
    /// `fedavg`: the seed of the row order (the same seed, the same model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `fedavg` as FedProx: the weight μ of the proximal term `μ/2 · ‖w − w_round‖²` each site adds to its local
    /// objective, which holds its local steps near the round's model when sites' data differ. Absent or 0: FedAvg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proximal_mu: Option<f64>,
    /// `fedavg` under secure aggregation: each site releases only its update masked so that the orchestrator learns
    /// the sum over the sites alone (the `secure` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation: Option<bool>,
    /// `fedavg` under differential privacy: each site clips and noises its round's update ([`crate::privacy`]), for
    /// `rounds` training rounds at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_privacy: Option<crate::privacy::Privacy>,
    /// `fedavg`: the centre and scale of numeric terms by name (`{"age": [60, 12]}`), where the sites' moments are
    /// not released (under differential privacy); terms not named are neither centred nor scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardise: Option<std::collections::BTreeMap<String, [f64; 2]>>,
}

impl ModelParameters {
    /// The proximal term's weight (0 for FedAvg); a negative or not finite μ is refused.
    pub fn proximal(&self) -> Result<f64, JobError> {
        match self.proximal_mu {
            None => Ok(0.0),
            Some(mu) if mu.is_finite() && mu >= 0.0 => Ok(mu),
            Some(mu) => Err(invalid(format!("proximalMu: a number of at least 0, not {mu}"))),
        }
    }
}

/// A model's design: which column feeds each term (a numeric value, a boolean, or one level of a categorical).
#[derive(Debug, Clone)]
pub struct Design {
    /// Term names: `(intercept)`, `age`, `sex=M`, ...
    pub terms: Vec<String>,
    /// (column index, `Some(level)` for a dummy of a categorical level).
    sources: Vec<(usize, Option<f64>)>,
    outcome: usize,
    pub family: Family,
    /// The rows used.
    pub rows: Vec<u32>,
    /// The outcome's classes (logistic: rows with 0, rows with 1).
    pub classes: Option<(u64, u64)>,
}

impl Design {
    pub fn new(table: &Table, parameters: &ModelParameters, deadline: &Deadline) -> Result<Design, JobError> {
        let (outcome, outcome_column) = column(table, &parameters.outcome, "outcome")?;
        match (parameters.family, outcome_column.kind) {
            (Family::Logistic, Kind::Boolean) | (Family::Poisson, Kind::Integer) => {}
            (Family::Linear, Kind::Integer | Kind::Float) => {}
            (family, kind) => {
                return Err(invalid(format!(
                    "outcome: a {family:?} model needs a {} outcome; `{}` is {}",
                    match family {
                        Family::Logistic => "boolean",
                        Family::Poisson => "integer count",
                        Family::Linear => "numeric",
                    },
                    outcome_column.name,
                    kind.name()
                )));
            }
        }
        if parameters.covariates.is_empty() {
            return Err(invalid("covariates: name at least one"));
        }
        let mut terms = vec!["(intercept)".to_owned()];
        let mut sources = vec![(usize::MAX, None)];
        let mut used = vec![outcome];
        for (i, name) in parameters.covariates.iter().enumerate() {
            let parameter = format!("covariates[{i}]");
            let (at, column) = column(table, name, &parameter)?;
            if at == outcome || used.contains(&at) {
                return Err(invalid(format!("{parameter}: `{name}` is the outcome or named twice")));
            }
            used.push(at);
            match column.kind {
                Kind::Categorical => {
                    for (level, name) in column.levels.iter().enumerate().skip(1) {
                        terms.push(format!("{}={name}", column.name));
                        sources.push((at, Some(level as f64)));
                    }
                }
                _ => {
                    terms.push(column.name.clone());
                    sources.push((at, None));
                }
            }
        }
        let rows = select(table, &parameters.filters, &used, deadline)?;
        let y = &table.values[outcome];
        let classes = (parameters.family == Family::Logistic).then(|| {
            let events = rows.iter().filter(|&&r| y[r as usize] != 0.0).count() as u64;
            (rows.len() as u64 - events, events)
        });
        if parameters.family == Family::Poisson && rows.iter().any(|&r| y[r as usize] < 0.0) {
            return Err(invalid("outcome: a Poisson outcome cannot be negative"));
        }
        Ok(Design { terms, sources, outcome, family: parameters.family, rows, classes })
    }

    fn fill(&self, table: &Table, row: usize, x: &mut [f64]) -> f64 {
        for (slot, &(at, level)) in x.iter_mut().zip(&self.sources) {
            *slot = match level {
                _ if at == usize::MAX => 1.0,
                Some(level) => f64::from(table.values[at][row] == level),
                None => table.values[at][row],
            };
        }
        table.values[self.outcome][row]
    }
}

/// The mean and the variance weight of the family's canonical link at linear predictor `eta`.
fn mean_and_weight(family: Family, eta: f64) -> (f64, f64) {
    match family {
        Family::Logistic => {
            let mu = 1.0 / (1.0 + (-eta).exp());
            (mu, mu * (1.0 - mu))
        }
        Family::Linear => (eta, 1.0),
        Family::Poisson => {
            let mu = eta.min(700.0).exp();
            (mu, mu)
        }
    }
}

fn deviance_term(family: Family, y: f64, mu: f64) -> f64 {
    match family {
        Family::Logistic => {
            let mu = mu.clamp(1e-300, 1.0 - 1e-16);
            -2.0 * if y != 0.0 { mu.ln() } else { (1.0 - mu).ln() }
        }
        Family::Linear => (y - mu) * (y - mu),
        Family::Poisson => 2.0 * (if y > 0.0 { y * (y / mu).ln() } else { 0.0 } - (y - mu)),
    }
}

/// One site's contribution to a Newton round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub n: u64,
    /// X'(y - μ).
    pub score: Vec<f64>,
    /// X'WX, row-major.
    pub information: Vec<f64>,
    pub deviance: f64,
}

/// `glm`: the score vector and information matrix at `beta` (canonical links, so Newton is Fisher scoring).
pub fn glm_round(table: &Table, design: &Design, beta: &[f64], deadline: &Deadline) -> Result<Round, JobError> {
    let p = design.terms.len();
    if beta.len() != p {
        return Err(invalid(format!("coefficients: {} given for {p} terms", beta.len())));
    }
    if beta.iter().any(|b| !b.is_finite()) {
        return Err(invalid("coefficients: must be finite"));
    }
    let cells = p.checked_mul(p).ok_or_else(|| invalid(format!("covariates: {p} terms are too many for a model")))?;
    deadline.admit(cells.saturating_mul(size_of::<f64>()))?;
    let mut information = Vec::new();
    information
        .try_reserve_exact(cells)
        .map_err(|_| invalid(format!("covariates: the {p} terms' {p}×{p} information matrix cannot be held")))?;
    information.resize(cells, 0.0);
    let mut score = vec![0.0; p];
    let mut deviance = 0.0;
    let mut x = vec![0.0; p];
    for (i, &row) in design.rows.iter().enumerate() {
        deadline.check(i)?;
        let y = design.fill(table, row as usize, &mut x);
        let eta: f64 = x.iter().zip(beta).map(|(a, b)| a * b).sum();
        let (mu, w) = mean_and_weight(design.family, eta);
        let residual = y - mu;
        deviance += deviance_term(design.family, y, mu);
        for a in 0..p {
            score[a] += x[a] * residual;
            let wa = w * x[a];
            let line = &mut information[a * p..a * p + a + 1];
            for (b, slot) in line.iter_mut().enumerate() {
                *slot += wa * x[b];
            }
        }
    }
    for a in 0..p {
        for b in 0..a {
            information[b * p + a] = information[a * p + b];
        }
    }
    Ok(Round { n: design.rows.len() as u64, score, information, deviance })
}

/// `fedavg`, first round: each term's sum and sum of squares, so the consumer can standardise the terms federation-
/// wide before training.
pub fn term_moments(table: &Table, design: &Design, deadline: &Deadline) -> Result<(Vec<f64>, Vec<f64>), JobError> {
    let p = design.terms.len();
    let (mut sums, mut squares, mut x) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    for (i, &row) in design.rows.iter().enumerate() {
        deadline.check(i)?;
        design.fill(table, row as usize, &mut x);
        for a in 0..p {
            sums[a] += x[a];
            squares[a] += x[a] * x[a];
        }
    }
    Ok((sums, squares))
}

/// `fedavg`, a training round: `epochs` passes of SGD (one row at a time, in an order fixed by `seed`) on the
/// standardised terms `(x - center) / scale`, starting from `weights`. With `proximal` (μ > 0, FedProx) each step also
/// pulls towards `weights` by μ times the distance, the gradient of `μ/2 · ‖w − weights‖²`.
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    table: &Table,
    design: &Design,
    weights: &[f64],
    center: &[f64],
    scale: &[f64],
    learning_rate: f64,
    epochs: u32,
    seed: u64,
    proximal: f64,
    deadline: &Deadline,
) -> Result<Vec<f64>, JobError> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let p = design.terms.len();
    if weights.len() != p || center.len() != p || scale.len() != p {
        return Err(invalid(format!("weights, center and scale need {p} values each")));
    }
    if design.family == Family::Poisson {
        return Err(invalid("family: fedavg trains logistic and linear models"));
    }
    let mut w = weights.to_vec();
    let mut order = design.rows.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = vec![0.0; p];
    let mut step = 0usize;
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for &row in &order {
            deadline.check(step)?;
            step += 1;
            let y = design.fill(table, row as usize, &mut x);
            for a in 0..p {
                x[a] = (x[a] - center[a]) / scale[a];
            }
            let eta: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let residual = y - mean_and_weight(design.family, eta).0;
            for a in 0..p {
                w[a] += learning_rate * (residual * x[a] - proximal * (w[a] - weights[a]));
            }
        }
    }
    Ok(w)
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major, `n`×`n`) by Cholesky; `None` when `A` is not
/// positive definite (a singular design: collinear terms or an empty level).
pub fn solve_spd(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let l = cholesky(a, b.len())?;
    Some(cholesky_solve(&l, b))
}

/// The inverse of a symmetric positive definite matrix (for standard errors).
pub fn inverse_spd(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let l = cholesky(a, n)?;
    let mut inverse = vec![0.0; n * n];
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        for (i, v) in cholesky_solve(&l, &e).into_iter().enumerate() {
            inverse[i * n + j] = v;
        }
    }
    Some(inverse)
}

fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - dot;
                if d <= 1e-12 * a[i * n + i].abs().max(1e-300) {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - dot) / l[j * n + j];
            }
        }
    }
    Some(l)
}

fn cholesky_solve(l: &[f64], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    x
}

/// Typed parameters of any template, read from JSON.
pub fn read_parameters<T: serde::de::DeserializeOwned>(parameters: &Json) -> Result<T, JobError> {
    serde_json::from_value(parameters.clone()).map_err(|e| invalid(format!("parameters: {e}")))
}

/// The JSON of a row-major matrix as rows.
pub fn matrix_json(values: &[f64], n: usize) -> Json {
    json!(values.chunks(n.max(1)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn forever() -> Deadline {
        Deadline::after(Instant::now(), 60)
    }

    #[test]
    fn newton_rounds_recover_the_generating_model() {
        let table = synth::cohort(20_000, 0, 11);
        let (terms, beta) = fit(
            &table,
            json!({"family": "logistic", "outcome": "readmitted",
            "covariates": ["age", "sex", "hba1c", "smoker", "ckd"]}),
        );
        let hba1c = terms.iter().position(|t| t == "hba1c").unwrap();
        assert!((beta[hba1c] - 0.22).abs() < 0.08, "{beta:?}");
    }

    /// Fits `family` by Newton rounds on one table; answers the terms and coefficients.
    fn fit(table: &Table, parameters: Json) -> (Vec<String>, Vec<f64>) {
        let parameters: ModelParameters = read_parameters(&parameters).unwrap();
        let design = Design::new(table, &parameters, &forever()).unwrap();
        let mut beta = vec![0.0; design.terms.len()];
        for _ in 0..50 {
            let round = glm_round(table, &design, &beta, &forever()).unwrap();
            let step = solve_spd(&round.information, &round.score).unwrap();
            beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
            if step.iter().all(|s| s.abs() < 1e-10) {
                break;
            }
        }
        (design.terms, beta)
    }

    #[test]
    fn linear_and_poisson_models_recover_their_generating_coefficients() {
        use rand::{Rng, SeedableRng};
        use rand_distr::{Distribution, Normal, Poisson};
        let schema = crate::table::Schema::from_json(&json!({"columns": [
            {"name": "x", "type": "float"}, {"name": "y", "type": "float"}, {"name": "count", "type": "integer"}]}))
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let noise = Normal::new(0.0, 0.5).unwrap();
        let mut values = vec![Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..20_000 {
            let x: f64 = rng.random_range(-1.0..1.0);
            values[0].push(x);
            values[1].push(2.0 - 1.5 * x + noise.sample(&mut rng));
            values[2].push(Poisson::new((0.3 + 0.8 * x).exp()).unwrap().sample(&mut rng));
        }
        let table = Table { schema, rows: 20_000, values };
        let (_, linear) = fit(&table, json!({"family": "linear", "outcome": "y", "covariates": ["x"]}));
        assert!((linear[0] - 2.0).abs() < 0.02 && (linear[1] + 1.5).abs() < 0.03, "{linear:?}");
        let (_, poisson) = fit(&table, json!({"family": "poisson", "outcome": "count", "covariates": ["x"]}));
        assert!((poisson[0] - 0.3).abs() < 0.03 && (poisson[1] - 0.8).abs() < 0.04, "{poisson:?}");
    }

    /// FedProx's proximal term holds a site's local steps near the round's model: with μ > 0 the weights end nearer
    /// where the round started than FedAvg's, the more so the larger μ; μ = 0 is FedAvg step for step; a negative μ
    /// is refused.
    #[test]
    fn the_proximal_term_holds_local_steps_near_the_rounds_model() {
        let table = synth::cohort(3000, 1, 7);
        let parameters = |mu: Option<f64>| -> ModelParameters {
            let mut json =
                json!({"family": "logistic", "outcome": "readmitted", "covariates": ["age", "hba1c", "ckd"]});
            if let Some(mu) = mu {
                json["proximalMu"] = json!(mu);
            }
            read_parameters(&json).unwrap()
        };
        let design = Design::new(&table, &parameters(None), &forever()).unwrap();
        let p = design.terms.len();
        let (sums, squares) = term_moments(&table, &design, &forever()).unwrap();
        let n = design.rows.len() as f64;
        let center: Vec<f64> = (0..p).map(|j| if j == 0 { 0.0 } else { sums[j] / n }).collect();
        let scale: Vec<f64> =
            (0..p).map(|j| if j == 0 { 1.0 } else { (squares[j] / n - center[j].powi(2)).sqrt() }).collect();
        let start: Vec<f64> = (0..p).map(|j| 0.3 - 0.2 * j as f64).collect();
        let train = |mu: f64| sgd(&table, &design, &start, &center, &scale, 0.05, 3, 9, mu, &forever()).unwrap();
        let drift = |w: &[f64]| w.iter().zip(&start).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let (fedavg, weak, strong) = (train(0.0), train(0.1), train(1.0));
        assert!(drift(&strong) < drift(&weak) && drift(&weak) < drift(&fedavg), "{fedavg:?} {weak:?} {strong:?}");
        assert!(drift(&fedavg) > 0.1, "the plain steps moved: {fedavg:?}");
        assert_eq!(parameters(None).proximal().unwrap(), 0.0);
        assert_eq!(train(parameters(Some(0.0)).proximal().unwrap()), fedavg);
        let refused = parameters(Some(-0.5)).proximal().unwrap_err();
        assert!(refused.to_string().contains("proximalMu"), "{refused}");
    }

    #[test]
    fn a_model_whose_information_matrix_would_pass_the_memory_limit_is_refused_before_it_is_allocated() {
        let levels: Vec<String> = (0..2000).map(|i| format!("ward-{i}")).collect();
        let schema = crate::table::Schema::from_json(&json!({"columns": [
            {"name": "readmitted", "type": "boolean"}, {"name": "ward", "type": "categorical", "levels": levels}]}))
        .unwrap();
        // A few rows: the matrix's size depends on the terms alone.
        let values = vec![(0..10).map(|i| f64::from(i % 3 == 0)).collect(), (0..10).map(f64::from).collect()];
        let table = Table { schema, rows: 10, values };
        let parameters: ModelParameters =
            read_parameters(&json!({"family": "logistic", "outcome": "readmitted", "covariates": ["ward"]})).unwrap();
        let design = Design::new(&table, &parameters, &forever()).unwrap();
        let beta = vec![0.0; design.terms.len()];
        // 2 000 terms: 32 MB of matrix against a limit of 16 MiB; no meter has to see it.
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limited = Deadline { memory: Some((flag.clone(), 16)), ..forever() };
        let Err(refused) = glm_round(&table, &design, &beta, &limited) else { panic!("a 32 MB matrix under 16 MiB") };
        assert!(matches!(refused, JobError::MemoryLimit(16)), "{refused}");
        assert!(!flag.load(std::sync::atomic::Ordering::Relaxed));
        // Within the limit it runs.
        let roomy = Deadline { memory: Some((flag, 64)), ..forever() };
        assert_eq!(glm_round(&table, &design, &beta, &roomy).unwrap().score.len(), 2000);
    }

    #[test]
    fn the_cholesky_inverse_inverts() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inverse = inverse_spd(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let product: f64 = (0..3).map(|k| a[i * 3 + k] * inverse[k * 3 + j]).sum();
                assert!((product - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(solve_spd(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0]).is_none(), "singular");
    }

    #[test]
    fn parameters_are_checked_against_the_table() {
        let table = synth::cohort(50, 0, 1);
        let bad = |parameters: Json| {
            let parameters: AggregateParameters = read_parameters(&parameters).unwrap();
            aggregate(&table, &parameters, 64, &forever()).unwrap_err().to_string()
        };
        assert!(bad(json!({"metrics": [{"column": "age", "statistics": ["max"]}]})).contains("single row"));
        assert!(bad(json!({"groupBy": ["age"]})).contains("group by boolean or categorical"));
        assert!(bad(json!({"groupBy": ["patient_id"]})).contains("may not be used"));
        assert!(bad(json!({"filters": [{"column": "sex", "op": "gt", "value": "F"}]})).contains("not ordered"));
        assert!(bad(json!({"groupBy": ["diagnosis", "sex", "smoker", "ckd", "hypertension"]})).contains("exceed"));
    }
}
