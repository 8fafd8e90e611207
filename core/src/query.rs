//! EDC QuerySpec (`offset`, `limit`, `sortField`, `sortOrder`, `filterExpression`) and the criterion matching that
//! filters and asset selectors share.

use std::cmp::Ordering;

use hanse_vocab::ns::EDC;
use serde_json::{Map, Value as Json, json};

use crate::{FieldError, Invalid};

/// One selector criterion (`operandLeft operator operandRight`), as in EDC.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub operand_left: String,
    pub operator: String,
    pub operand_right: Json,
}

/// Operators of criteria and QuerySpec filters.
pub const OPERATORS: &[&str] = &["=", "!=", "in", "like", "ilike"];

impl Criterion {
    /// The EDC management form.
    pub fn to_json(&self) -> Json {
        json!({"@type": "Criterion", "operandLeft": self.operand_left, "operator": self.operator, "operandRight": self.operand_right})
    }
}

/// The default page size, as in EDC.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page a management query returns.
pub const MAX_LIMIT: usize = 10_000;

/// A management query.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySpec {
    pub offset: usize,
    pub limit: usize,
    pub sort_field: Option<String>,
    pub descending: bool,
    pub filter: Vec<Criterion>,
}

impl Default for QuerySpec {
    fn default() -> Self {
        QuerySpec { offset: 0, limit: DEFAULT_LIMIT, sort_field: None, descending: false, filter: Vec::new() }
    }
}

/// A member in any spelling: bare, `edc:` or the full EDC IRI.
pub fn get<'a>(object: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    object.get(name).or_else(|| object.get(&format!("edc:{name}"))).or_else(|| object.get(&format!("{EDC}{name}")))
}

fn unwrap_value(value: &Json) -> &Json {
    match value {
        Json::Object(map) => map.get("@value").unwrap_or(value),
        Json::Array(items) if items.len() == 1 => unwrap_value(&items[0]),
        other => other,
    }
}

fn number(object: &Map<String, Json>, name: &str, errors: &mut Invalid) -> Option<usize> {
    let value = unwrap_value(get(object, name)?);
    match value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())) {
        Some(n) => Some(n as usize),
        None => {
            errors.push(FieldError {
                path: name.into(),
                message: "must be a non-negative integer".into(),
                invalid_value: Some(value.clone()),
            });
            None
        }
    }
}

impl QuerySpec {
    /// Reads a QuerySpec body; an empty or missing body is the default query.
    pub fn from_body(body: Option<&Json>) -> Result<QuerySpec, Invalid> {
        let mut spec = QuerySpec::default();
        let object = match body {
            None | Some(Json::Null) => return Ok(spec),
            Some(Json::Object(object)) => object,
            Some(_) => return Err(vec![FieldError::new("", "a QuerySpec must be a JSON object")]),
        };
        let mut errors = Vec::new();
        if let Some(offset) = number(object, "offset", &mut errors) {
            spec.offset = offset;
        }
        if let Some(limit) = number(object, "limit", &mut errors) {
            if limit == 0 || limit > MAX_LIMIT {
                errors.push(FieldError::new("limit", format!("must be between 1 and {MAX_LIMIT}")));
            }
            spec.limit = limit.clamp(1, MAX_LIMIT);
        }
        if let Some(field) = get(object, "sortField").map(unwrap_value) {
            match field.as_str() {
                Some(f) if !f.is_empty() => spec.sort_field = Some(f.to_owned()),
                _ => errors.push(FieldError::new("sortField", "must be a field name")),
            }
        }
        if let Some(order) = get(object, "sortOrder").map(unwrap_value) {
            match order.as_str().map(str::to_ascii_uppercase).as_deref() {
                Some("ASC") => spec.descending = false,
                Some("DESC") => spec.descending = true,
                _ => errors.push(FieldError {
                    path: "sortOrder".into(),
                    message: "must be ASC or DESC".into(),
                    invalid_value: Some(order.clone()),
                }),
            }
        }
        let filters = match get(object, "filterExpression") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items.iter().collect(),
            Some(other) => vec![other],
        };
        for (i, filter) in filters.into_iter().enumerate() {
            let path = format!("filterExpression[{i}]");
            let Some(filter) = filter.as_object() else {
                errors.push(FieldError::new(path, "must be an object with operandLeft, operator, operandRight"));
                continue;
            };
            let left = get(filter, "operandLeft").map(unwrap_value).and_then(Json::as_str);
            let operator = get(filter, "operator").map(unwrap_value).and_then(Json::as_str);
            let right = get(filter, "operandRight").cloned();
            match (left, operator, right) {
                (Some(left), Some(operator), Some(right)) if OPERATORS.contains(&operator) => {
                    let right = match right {
                        Json::Array(items) if operator == "in" => {
                            Json::Array(items.iter().map(|v| unwrap_value(v).clone()).collect())
                        }
                        other => unwrap_value(&other).clone(),
                    };
                    spec.filter.push(Criterion {
                        operand_left: left.to_owned(),
                        operator: operator.to_owned(),
                        operand_right: right,
                    });
                }
                (_, Some(operator), _) if !OPERATORS.contains(&operator) => errors.push(FieldError {
                    path: format!("{path}.operator"),
                    message: format!("must be one of {}", OPERATORS.join(", ")),
                    invalid_value: Some(Json::String(operator.to_owned())),
                }),
                _ => errors.push(FieldError::new(path, "needs operandLeft, operator and operandRight")),
            }
        }
        if errors.is_empty() { Ok(spec) } else { Err(errors) }
    }

    /// Checks that every field the query filters or sorts on is one of `known` (names without the EDC namespace):
    /// a query on a field the resource does not have is an error naming it, never an empty answer.
    pub fn check_fields(&self, kind: &str, known: &[&[&str]]) -> Result<(), Invalid> {
        let known: Vec<&str> = known.iter().flat_map(|fields| fields.iter().copied()).collect();
        let unknown = |name: &str| !known.contains(&name.trim_start_matches(EDC));
        let message = |name: &str| format!("`{name}` is not a field of {kind}; fields: {}", known.join(", "));
        let mut errors = Vec::new();
        for (i, criterion) in self.filter.iter().enumerate() {
            if unknown(&criterion.operand_left) {
                errors.push(FieldError::new(
                    format!("filterExpression[{i}].operandLeft"),
                    message(&criterion.operand_left),
                ));
            }
        }
        if let Some(sort) = self.sort_field.as_deref().filter(|s| unknown(s)) {
            errors.push(FieldError::new("sortField", message(sort)));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Filters, sorts and pages `items`, reading fields with `field`.
    pub fn apply<T>(&self, items: Vec<T>, field: impl Fn(&T, &str) -> Vec<Json>) -> Vec<T> {
        let mut selected: Vec<T> = items
            .into_iter()
            .filter(|item| {
                self.filter.iter().all(|c| matches(&field(item, &c.operand_left), &c.operator, &c.operand_right))
            })
            .collect();
        if let Some(sort) = &self.sort_field {
            selected.sort_by(|a, b| {
                let order = compare_fields(&field(a, sort), &field(b, sort));
                if self.descending { order.reverse() } else { order }
            });
        } else if self.descending {
            selected.reverse();
        }
        selected.into_iter().skip(self.offset).take(self.limit).collect()
    }
}

fn compare_fields(a: &[Json], b: &[Json]) -> Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) => compare(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare(a: &Json, b: &Json) -> Ordering {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => text(a).cmp(&text(b)),
    }
}

fn as_number(value: &Json) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn equal(a: &Json, b: &Json) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => text(a) == text(b),
    }
}

/// Whether a field's values satisfy `operator operand`: `=` and `like` hold when any value matches, `!=` when none
/// equals, `in` when any value is in the list.
pub fn matches(values: &[Json], operator: &str, operand: &Json) -> bool {
    match operator {
        "=" => values.iter().any(|v| equal(v, operand)),
        "!=" => !values.iter().any(|v| equal(v, operand)),
        "in" => {
            let options = operand.as_array().map(Vec::as_slice).unwrap_or(std::slice::from_ref(operand));
            values.iter().any(|v| options.iter().any(|o| equal(v, o)))
        }
        "like" => values.iter().any(|v| like(&text(v), &text(operand), false)),
        "ilike" => values.iter().any(|v| like(&text(v), &text(operand), true)),
        _ => false,
    }
}

/// SQL `LIKE`: `%` matches any run, `_` one character.
pub fn like(value: &str, pattern: &str, ignore_case: bool) -> bool {
    let (value, pattern): (Vec<char>, Vec<char>) = if ignore_case {
        (value.to_lowercase().chars().collect(), pattern.to_lowercase().chars().collect())
    } else {
        (value.chars().collect(), pattern.chars().collect())
    };
    // Iterative matching with backtracking to the last `%`.
    let (mut v, mut p) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == value[v]) {
            v += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some(p);
            mark = v;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            v = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '%' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn like_patterns() {
        assert!(like("diabetes-cohort", "diab%", false));
        assert!(like("diabetes-cohort", "%cohort", false));
        assert!(like("diabetes-cohort", "%bet%co%", false));
        assert!(like("abc", "a_c", false));
        assert!(!like("abc", "a_", false));
        assert!(!like("Diabetes", "diab%", false));
        assert!(like("Diabetes", "diab%", true));
        assert!(like("", "%", false));
    }

    #[test]
    fn a_query_spec_reads_in_edc_spellings() {
        let spec = QuerySpec::from_body(Some(&json!({
            "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "QuerySpec",
            "offset": 5, "limit": "10", "sortOrder": "DESC", "sortField": "id",
            "filterExpression": [{"operandLeft": "id", "operator": "in", "operandRight": ["a", "b"]}]
        })))
        .unwrap();
        assert_eq!((spec.offset, spec.limit, spec.descending), (5, 10, true));
        assert_eq!(spec.filter[0].operand_right, json!(["a", "b"]));
    }

    #[test]
    fn bad_query_specs_name_each_field() {
        let errors = QuerySpec::from_body(Some(&json!({"limit": -1, "sortOrder": "UP",
            "filterExpression": [{"operandLeft": "id", "operator": "~", "operandRight": "x"}]})))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["limit", "sortOrder", "filterExpression[0].operator"]);
    }

    #[test]
    fn paging_sorting_and_filtering() {
        let items: Vec<i64> = (1..=20).collect();
        let spec = QuerySpec {
            offset: 2,
            limit: 3,
            sort_field: Some("n".into()),
            descending: true,
            filter: vec![Criterion { operand_left: "n".into(), operator: "!=".into(), operand_right: json!(19) }],
        };
        assert_eq!(spec.apply(items, |n, _| vec![json!(n)]), vec![17, 16, 15]);
    }
}
