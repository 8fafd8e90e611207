//! Disclosure control, applied by the provider's host code to whatever a template computed, before anything leaves:
//!
//! - every released cell carries its n; a cell with 0 < n < k is suppressed (primary suppression);
//! - where released totals would let the suppressed value be recomputed (a total minus the other cells), further
//!   cells are suppressed until every total involves at least two unknowns (complementary suppression);
//! - a sum in which one record contributes more than the dominance share of the cell's absolute total is suppressed
//!   (concentration rule), with its mean, variance and standard deviation;
//! - a model needs n ≥ k, n ≥ k in each outcome class (logistic) and at most 0.33·n parameters.
//!
//! What was suppressed, and why, is part of the result.

use serde_json::{Map, Value as Json, json};

use super::analysis::{Design, Grouped};

/// The disclosure settings a job runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The smallest cell count released.
    pub k: u64,
    /// The largest share of a cell's absolute total one record may contribute to a released sum.
    pub dominance: f64,
    /// The most cells one grouping may have.
    pub max_cells: usize,
}

/// The most parameters a model may have per row (DataSHIELD's rule).
pub const PARAMETERS_PER_ROW: f64 = 0.33;

/// Why a value is not released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    SmallCell,
    Complementary,
    Dominance,
}

impl Reason {
    fn text(self, k: u64, dominance: f64) -> String {
        match self {
            Reason::SmallCell => format!("0 < n < {k}"),
            Reason::Complementary => "complementary: a released total would reveal a suppressed cell".into(),
            Reason::Dominance => format!("one record contributes more than {:.0}% of the sum", dominance * 100.0),
        }
    }
}

/// Extends `suppressed` until no equation (a set of values with a released sum relation) has exactly one unknown:
/// each time, the smallest other value of that equation (preferring non-zero ones) is suppressed too.
fn complete(values: &[f64], suppressed: &mut [Option<Reason>], equations: &[Vec<usize>]) {
    loop {
        let mut changed = false;
        for equation in equations {
            if equation.iter().filter(|&&i| suppressed[i].is_some()).count() != 1 {
                continue;
            }
            let candidate = equation.iter().copied().filter(|&i| suppressed[i].is_none()).min_by(|&a, &b| {
                (values[a] == 0.0, values[a]).partial_cmp(&(values[b] == 0.0, values[b])).expect("finite")
            });
            if let Some(i) = candidate {
                suppressed[i] = Some(Reason::Complementary);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The released form of an `aggregate` or `crosstab` result. `margins`: release each column's one-way totals too
/// (crosstab).
pub fn release_grouped(grouped: &Grouped, limits: &Limits, margins: bool) -> Json {
    let cells = &grouped.cells;
    let count = cells.len();
    // Items: the cells, then (crosstab) one total per dimension and level, then the grand total.
    let mut labels: Vec<Json> = cells.iter().map(|c| labels_of(grouped, &c.levels)).collect();
    let mut counts: Vec<f64> = cells.iter().map(|c| c.n as f64).collect();
    let mut equations = Vec::new();
    let mut margin_items = Vec::new();
    if margins {
        for (d, (name, levels)) in grouped.dimensions.iter().enumerate() {
            let mut items = Vec::new();
            for (l, level) in levels.iter().enumerate() {
                let members: Vec<usize> = (0..count).filter(|&i| cells[i].levels[d] == l).collect();
                let item = counts.len();
                counts.push(members.iter().map(|&i| counts[i]).sum());
                labels.push(json!({ name.clone(): level }));
                equations.push(members.into_iter().chain([item]).collect());
                items.push(item);
            }
            margin_items.push(items);
        }
    }
    let total = counts.len();
    counts.push(grouped.total.n as f64);
    labels.push(json!("total"));
    equations.push((0..count).chain([total]).collect());
    for items in &margin_items {
        equations.push(items.iter().copied().chain([total]).collect());
    }
    let mut suppressed: Vec<Option<Reason>> =
        counts.iter().map(|&n| (n > 0.0 && n < limits.k as f64).then_some(Reason::SmallCell)).collect();
    complete(&counts, &mut suppressed, &equations);

    let mut report = Vec::new();
    for (i, reason) in suppressed.iter().enumerate() {
        if let Some(reason) = reason {
            report.push(json!({"cell": labels[i], "value": "n", "reason": reason.text(limits.k, limits.dominance)}));
        }
    }
    // Metrics (aggregate): the cells and the total, one equation, suppressed wherever the count is, plus dominance.
    let mut metric_suppressed = Vec::new();
    for (m, metric) in grouped.metrics.iter().enumerate() {
        let sums: Vec<f64> = cells.iter().chain([&grouped.total]).map(|c| c.sums[m]).collect();
        let mut hidden: Vec<Option<Reason>> = cells
            .iter()
            .chain([&grouped.total])
            .enumerate()
            .map(|(i, cell)| {
                let item = if i == count { total } else { i };
                suppressed[item].or_else(|| {
                    (cell.n > 0 && cell.largest[m] > limits.dominance * cell.absolutes[m]).then_some(Reason::Dominance)
                })
            })
            .collect();
        complete(&sums, &mut hidden, &[(0..=count).collect()]);
        for (i, reason) in hidden.iter().enumerate() {
            let item = if i == count { total } else { i };
            if let Some(reason) = reason
                && suppressed[item].is_none()
            {
                report.push(json!({"cell": labels[item], "value": metric.column, "reason": reason.text(limits.k, limits.dominance)}));
            }
        }
        metric_suppressed.push(hidden);
    }

    let metrics_of = |i: usize, cell: &super::analysis::Cell| -> Json {
        let mut out = Map::new();
        for (m, metric) in grouped.metrics.iter().enumerate() {
            if metric_suppressed[m][i].is_some() {
                out.insert(metric.column.clone(), Json::Null);
                continue;
            }
            let n = cell.n as f64;
            let mean = cell.sums[m] / n;
            let variance = (n > 1.0).then(|| ((cell.squares[m] - n * mean * mean) / (n - 1.0)).max(0.0));
            let mut values = Map::new();
            for statistic in &metric.statistics {
                let value = match statistic.as_str() {
                    "count" => json!(cell.n),
                    "sum" => json!(cell.sums[m]),
                    "mean" => json!((n > 0.0).then_some(mean)),
                    "variance" => json!(variance),
                    _ => json!(variance.map(f64::sqrt)),
                };
                values.insert(statistic.clone(), value);
            }
            out.insert(metric.column.clone(), Json::Object(values));
        }
        Json::Object(out)
    };
    let released =
        |item: usize| -> Json { if suppressed[item].is_some() { Json::Null } else { json!(counts[item] as u64) } };
    let mut out = Map::new();
    out.insert("k".into(), json!(limits.k));
    out.insert(
        "cells".into(),
        Json::Array(
            cells
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let mut entry = json!({"group": labels[i], "n": released(i)});
                    if !grouped.metrics.is_empty() {
                        entry["metrics"] = metrics_of(i, cell);
                    }
                    entry
                })
                .collect(),
        ),
    );
    if margins {
        let mut margin_json = Map::new();
        for ((name, levels), items) in grouped.dimensions.iter().zip(&margin_items) {
            let entries: Vec<Json> =
                levels.iter().zip(items).map(|(level, &item)| json!({"level": level, "n": released(item)})).collect();
            margin_json.insert(name.clone(), Json::Array(entries));
        }
        out.insert("margins".into(), Json::Object(margin_json));
    }
    let mut total_json = json!({"n": released(total)});
    if !grouped.metrics.is_empty() {
        total_json["metrics"] = metrics_of(count, &grouped.total);
    }
    out.insert("total".into(), total_json);
    out.insert("suppressed".into(), Json::Array(report));
    Json::Object(out)
}

fn labels_of(grouped: &Grouped, levels: &[usize]) -> Json {
    let mut out = Map::new();
    for ((name, names), &level) in grouped.dimensions.iter().zip(levels) {
        out.insert(name.clone(), json!(names[level]));
    }
    Json::Object(out)
}

/// Whether a model may be fitted on these rows; the error says which rule it breaks.
pub fn check_model(design: &Design, limits: &Limits) -> Result<Json, String> {
    let n = design.rows.len() as u64;
    let p = design.terms.len();
    if n < limits.k {
        return Err(format!("the model would use {n} rows, fewer than k = {}", limits.k));
    }
    if let Some((non_events, events)) = design.classes
        && non_events.min(events) < limits.k
    {
        return Err(format!("each outcome class needs at least k = {} rows", limits.k));
    }
    if p as f64 > PARAMETERS_PER_ROW * n as f64 {
        return Err(format!("{p} parameters exceed {PARAMETERS_PER_ROW}·n for n = {n}"));
    }
    Ok(json!([
        format!("n = {n} ≥ k = {}", limits.k),
        format!("parameters {p} ≤ {PARAMETERS_PER_ROW}·n"),
        if design.classes.is_some() {
            format!("each outcome class ≥ k = {}", limits.k)
        } else {
            "no outcome classes".into()
        },
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Cell;

    fn grouped(counts: &[[u64; 2]; 2]) -> Grouped {
        let mut cells = Vec::new();
        for (a, row) in counts.iter().enumerate() {
            for (b, &n) in row.iter().enumerate() {
                cells.push(Cell {
                    levels: vec![a, b],
                    n,
                    sums: vec![n as f64 * 10.0],
                    squares: vec![n as f64 * 100.0],
                    absolutes: vec![n as f64 * 10.0],
                    largest: vec![if n == 0 { 0.0 } else { 10.0 }],
                });
            }
        }
        let total = cells.iter().map(|c| c.n).sum::<u64>();
        let total = Cell {
            levels: vec![],
            n: total,
            sums: vec![total as f64 * 10.0],
            squares: vec![total as f64 * 100.0],
            absolutes: vec![total as f64 * 10.0],
            largest: vec![10.0],
        };
        let dimensions = vec![("a".into(), vec!["x".into(), "y".into()]), ("b".into(), vec!["u".into(), "v".into()])];
        Grouped { dimensions, metrics: vec![], cells, total }
    }

    const LIMITS: Limits = Limits { k: 5, dominance: 0.5, max_cells: 100 };

    #[test]
    fn a_small_cell_and_its_complements_are_suppressed_so_no_margin_reveals_it() {
        let released = release_grouped(&grouped(&[[3, 40], [50, 60]]), &LIMITS, true);
        let n = |i: usize| released["cells"][i]["n"].clone();
        assert_eq!(n(0), Json::Null, "3 < k");
        // Row x's total and column u's total would each reveal the 3: one more cell in that row and that column go.
        assert_eq!((n(1), n(2)), (Json::Null, Json::Null), "{released:#}");
        // Then row y and column v each have one unknown: the fourth cell goes too.
        assert_eq!(n(3), Json::Null);
        assert_eq!(released["total"]["n"], 153);
        let reasons: Vec<&str> =
            released["suppressed"].as_array().unwrap().iter().map(|s| s["reason"].as_str().unwrap()).collect();
        assert!(reasons[0].starts_with("0 < n < 5") && reasons[1].starts_with("complementary"), "{reasons:?}");
    }

    #[test]
    fn zeros_and_large_cells_are_released() {
        let released = release_grouped(&grouped(&[[0, 40], [50, 60]]), &LIMITS, true);
        assert_eq!(released["cells"][0]["n"], 0);
        assert!(released["suppressed"].as_array().unwrap().is_empty());
    }
}
