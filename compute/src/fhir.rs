//! FHIR R4 ingestion (decision 0046): a bulk export (NDJSON files) or Bundles, read into one row per patient by a
//! declarative mapping the operator writes and can read.
//!
//! A mapping names each column, its type, and where its value comes from:
//! - `{"resource": "Patient", "value": "gender" | "birthDate" | "deceased"}`, or `"value": "age"` with `"at":
//!   "2025-01-01"` (whole years at that date);
//! - `{"resource": "Condition" | "Observation" | "Encounter" | "MedicationStatement", "system": …, "codes": […],
//!   "value": …}`: the patient's resources with a coding of `system` whose code starts with one of `codes` (any code
//!   of the system without `codes`; any resource without `system`), and of them `exists` (boolean), `count`
//!   (integer), the `first`, `latest` or `mean` Observation `valueQuantity` (by effective date), or the `code` of the
//!   earliest one (categorical: ICD-10, SNOMED CT and LOINC codes stay codes; the declared levels match by prefix,
//!   without levels the codes seen are the levels).
//!
//! Codings are read from `Condition.code`, `Observation.code`, `Encounter.type` and `Encounter.reasonCode`, and
//! `MedicationStatement.medicationCodeableConcept`; a resource's patient from `subject.reference` (`Patient/<id>`, or
//! a Bundle entry's `fullUrl`). Every bad record is reported with its file and line (or Bundle entry), and any
//! problem means no table, as for CSV. Resources of other types are skipped.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::table::{Column, IngestError, Kind, Problem, REPORTED_PROBLEMS, Schema, Table};

/// The resource types a mapping may read.
pub const RESOURCE_TYPES: [&str; 5] = ["Patient", "Condition", "Observation", "Encounter", "MedicationStatement"];
/// Code systems kept for the description; an export naming more is not listed beyond these.
const LISTED_SYSTEMS: usize = 64;
/// The most levels a `code` column without declared levels may find.
const INFERRED_CODES: usize = crate::table::INFERRED_LEVELS;
/// The longest NDJSON line (one resource, or a Bundle on one line).
pub const LONGEST_LINE: u64 = 16 << 20;
/// The largest Bundle file: a Bundle is parsed whole, which takes several times its size in memory; larger exports
/// come as NDJSON.
pub const LARGEST_BUNDLE: u64 = 64 << 20;

/// What a mapped column takes from the resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Value {
    Gender,
    BirthDate,
    Age,
    Deceased,
    Exists,
    Count,
    First,
    Latest,
    Mean,
    Code,
}

fn yes() -> bool {
    true
}

/// One column of a mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappedColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub resource: String,
    pub value: Value,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub codes: Vec<String>,
    /// `age`: the date the age is taken at.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub levels: Vec<String>,
    #[serde(default = "yes")]
    pub analysable: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// A declarative mapping from FHIR resources to a table of patients.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mapping {
    pub columns: Vec<MappedColumn>,
}

impl Mapping {
    /// Reads and checks a mapping (JSON); the error names the column.
    pub fn from_json(value: &Json) -> Result<Mapping, String> {
        let mapping: Mapping = serde_json::from_value(value.clone()).map_err(|e| format!("mapping: {e}"))?;
        if mapping.columns.is_empty() {
            return Err("mapping: declares no columns".into());
        }
        for column in &mapping.columns {
            column.check().map_err(|e| format!("mapping: column `{}`: {e}", column.name))?;
        }
        // The column names, types and declared levels must also make a valid schema.
        let mut declared = mapping.schema_with(|_| Vec::new());
        for column in declared.iter_mut().filter(|c| c.kind == Kind::Categorical && c.levels.is_empty()) {
            column.levels = vec!["(inferred)".into()];
        }
        Schema::from_json(&json!({"columns": declared})).map_err(|e| format!("mapping: {e}"))?;
        Ok(mapping)
    }

    /// The schema's columns, with `inferred` levels for `code` columns that declare none.
    fn schema_with(&self, inferred: impl Fn(usize) -> Vec<String>) -> Vec<Column> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| Column {
                name: c.name.clone(),
                kind: c.kind,
                levels: match c.levels.is_empty() && c.value == Value::Code {
                    true => inferred(i),
                    false => c.levels.clone(),
                },
                nullable: !matches!(c.value, Value::Exists | Value::Count | Value::Deceased),
                analysable: c.analysable,
                description: c.description.clone(),
            })
            .collect()
    }
}

impl MappedColumn {
    fn check(&self) -> Result<(), String> {
        if !RESOURCE_TYPES.contains(&self.resource.as_str()) {
            return Err(format!("resource: one of {}", RESOURCE_TYPES.join(", ")));
        }
        let patient = self.resource == "Patient";
        let (kinds, of_patient): (&[Kind], bool) = match self.value {
            Value::Gender => (&[Kind::Categorical], true),
            Value::BirthDate => (&[Kind::Date], true),
            Value::Age => (&[Kind::Integer], true),
            Value::Deceased => (&[Kind::Boolean], true),
            Value::Exists => (&[Kind::Boolean], false),
            Value::Count => (&[Kind::Integer], false),
            Value::First | Value::Latest | Value::Mean => (&[Kind::Float, Kind::Integer], false),
            Value::Code => (&[Kind::Categorical], false),
        };
        if of_patient != patient {
            let whose = if of_patient { "a Patient's" } else { "not a Patient's" };
            return Err(format!("value `{:?}` is {whose}", self.value).to_lowercase());
        }
        if !kinds.contains(&self.kind) {
            return Err(format!(
                "type: {} for this value",
                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(" or ")
            ));
        }
        if matches!(self.value, Value::First | Value::Latest | Value::Mean) && self.resource != "Observation" {
            return Err("first, latest and mean read Observation values".into());
        }
        if self.value == Value::Code && self.system.is_none() {
            return Err("a code column names its code `system`".into());
        }
        if self.value == Value::Gender && self.levels.is_empty() {
            return Err("levels: the genders kept, e.g. [\"female\", \"male\"]".into());
        }
        match (self.value, &self.at) {
            (Value::Age, Some(at)) if crate::table::parse_date(at).is_some() => Ok(()),
            (Value::Age, _) => Err("at: the date (YYYY-MM-DD) the age is taken at".into()),
            (_, Some(_)) => Err("at: only an age takes a date".into()),
            _ => Ok(()),
        }
    }

    /// Whether a resource's codings match the column's system and codes.
    fn matches(&self, codings: &[(String, String)]) -> bool {
        let Some(system) = &self.system else { return true };
        codings.iter().any(|(s, code)| s == system && self.code_matches(code))
    }

    fn code_matches(&self, code: &str) -> bool {
        self.codes.is_empty() || self.codes.iter().any(|prefix| code.starts_with(prefix.as_str()))
    }
}

/// A table read from FHIR, with what its description lists.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub table: Table,
    /// The resource types the export held, of those read.
    pub resource_types: BTreeSet<String>,
    /// The code systems of the codings read (up to 64).
    pub code_systems: BTreeSet<String>,
}

/// A column's value for one patient, as the resources arrive.
#[derive(Debug, Clone)]
enum Gathered {
    Value(f64),
    Count(u64),
    /// The date and value of the first or latest.
    Dated(Option<(String, f64)>),
    Mean(f64, u64),
    /// The date and code of the earliest.
    Code(Option<(String, String)>),
}

/// The patients and what their resources gave, in the order the patients came.
struct Gathering<'m> {
    mapping: &'m Mapping,
    /// Patients by their references (`Patient/<id>` and a Bundle entry's `fullUrl`) → row.
    rows: HashMap<String, usize>,
    /// Per row: the patient's id and position, and the columns' values.
    patients: Vec<(String, String)>,
    values: Vec<Vec<Gathered>>,
    /// Resources whose patient has not come (yet): reference → its values and first position.
    waiting: HashMap<String, (Vec<Gathered>, String)>,
    resource_types: BTreeSet<String>,
    code_systems: BTreeSet<String>,
    problems: Vec<Problem>,
    more: usize,
}

impl<'m> Gathering<'m> {
    fn fresh(&self) -> Vec<Gathered> {
        self.mapping
            .columns
            .iter()
            .map(|c| match c.value {
                Value::Exists | Value::Deceased => Gathered::Value(0.0),
                Value::Gender | Value::BirthDate | Value::Age => Gathered::Value(f64::NAN),
                Value::Count => Gathered::Count(0),
                Value::First | Value::Latest => Gathered::Dated(None),
                Value::Mean => Gathered::Mean(0.0, 0),
                Value::Code => Gathered::Code(None),
            })
            .collect()
    }

    fn report(&mut self, at: &str, column: Option<&str>, message: impl Into<String>) {
        if self.problems.len() < REPORTED_PROBLEMS {
            let (at, column) = (Some(at.to_owned()), column.map(str::to_owned));
            self.problems.push(Problem { line: 0, at, column, message: message.into() });
        } else {
            self.more += 1;
        }
    }

    /// Takes one resource (`full_url`: its Bundle entry's, if any) found at `at`.
    fn take(&mut self, resource: &Json, full_url: Option<&str>, at: &str) {
        let Some(kind) = resource.get("resourceType").and_then(Json::as_str) else {
            return self.report(at, None, "not a FHIR resource (no resourceType)");
        };
        if !RESOURCE_TYPES.contains(&kind) {
            return;
        }
        self.resource_types.insert(kind.to_owned());
        if kind == "Patient" {
            return self.take_patient(resource, full_url, at);
        }
        let Some(subject) = resource.pointer("/subject/reference").and_then(Json::as_str) else {
            return self.report(at, None, format!("{kind} has no subject.reference to its patient"));
        };
        let codings = codings(kind, resource);
        for (system, _) in &codings {
            if self.code_systems.len() < LISTED_SYSTEMS {
                self.code_systems.insert(system.clone());
            }
        }
        let date = date_of(kind, resource).unwrap_or_default().to_owned();
        let mapping = self.mapping;
        let mut gathered = match self.rows.get(subject) {
            Some(&row) => std::mem::take(&mut self.values[row]),
            None => match self.waiting.remove(subject) {
                Some((values, _)) => values,
                None => self.fresh(),
            },
        };
        for (i, column) in mapping.columns.iter().enumerate() {
            if column.resource != kind || !column.matches(&codings) {
                continue;
            }
            if let Err(message) = gather(column, &mut gathered[i], resource, &codings, &date) {
                self.report(at, Some(&column.name), message);
            }
        }
        match self.rows.get(subject) {
            Some(&row) => self.values[row] = gathered,
            None => {
                let first = self.waiting.get(subject).map_or_else(|| at.to_owned(), |(_, first)| first.clone());
                self.waiting.insert(subject.to_owned(), (gathered, first));
            }
        }
    }

    fn take_patient(&mut self, patient: &Json, full_url: Option<&str>, at: &str) {
        let Some(id) = patient.get("id").and_then(Json::as_str).filter(|id| !id.is_empty()) else {
            return self.report(at, None, "a Patient without an id");
        };
        let reference = format!("Patient/{id}");
        if let Some(&row) = self.rows.get(&reference) {
            let first = self.patients[row].1.clone();
            return self.report(at, None, format!("Patient `{id}` again (first at {first})"));
        }
        let mut gathered = self.waiting.remove(&reference).map(|(values, _)| values);
        if let Some(url) = full_url
            && let Some((values, _)) = self.waiting.remove(url)
        {
            gathered = Some(values);
        }
        let mut gathered = gathered.unwrap_or_else(|| self.fresh());
        let mapping = self.mapping;
        for (i, column) in mapping.columns.iter().enumerate().filter(|(_, c)| c.resource == "Patient") {
            match patient_value(column, patient) {
                Ok(value) => gathered[i] = Gathered::Value(value),
                Err(message) => self.report(at, Some(&column.name), message),
            }
        }
        let row = self.patients.len();
        self.rows.insert(reference, row);
        if let Some(url) = full_url {
            self.rows.insert(url.to_owned(), row);
        }
        self.patients.push((id.to_owned(), at.to_owned()));
        self.values.push(gathered);
    }

    /// Reads one file: a Bundle (`*.json`) or NDJSON (each line a resource or a Bundle).
    fn file(&mut self, name: &str, mut reader: impl BufRead) {
        use std::io::Read;
        if name.ends_with(".json") {
            let mut text = String::new();
            if let Err(error) = (&mut reader).take(LARGEST_BUNDLE + 1).read_to_string(&mut text) {
                return self.report(name, None, format!("cannot be read: {error}"));
            }
            if text.len() as u64 > LARGEST_BUNDLE {
                let limit = LARGEST_BUNDLE >> 20;
                return self.report(
                    name,
                    None,
                    format!("is a Bundle larger than {limit} MiB; send large exports as NDJSON"),
                );
            }
            match serde_json::from_str::<Json>(&text) {
                Ok(bundle) => self.bundle(&bundle, name),
                Err(error) => self.report(name, None, format!("is not JSON: {error}")),
            }
            return;
        }
        let mut line = String::new();
        for number in 1u64.. {
            line.clear();
            match (&mut reader).take(LONGEST_LINE + 1).read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => return self.report(&format!("{name}, line {number}"), None, error.to_string()),
            }
            if line.len() as u64 > LONGEST_LINE {
                let at = format!("{name}, line {number}");
                self.report(&at, None, format!("is longer than {} MiB", LONGEST_LINE >> 20));
                // The rest of the line is skipped, not held.
                if let Err(error) = reader.skip_until(b'\n') {
                    return self.report(&at, None, error.to_string());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{name}, line {number}");
            match serde_json::from_str::<Json>(&line) {
                Ok(resource) if resource.get("resourceType").and_then(Json::as_str) == Some("Bundle") => {
                    self.bundle(&resource, &at)
                }
                Ok(resource) => self.take(&resource, None, &at),
                Err(error) => self.report(&at, None, format!("is not JSON: {error}")),
            }
        }
    }

    fn bundle(&mut self, bundle: &Json, at: &str) {
        if bundle.get("resourceType").and_then(Json::as_str) != Some("Bundle") {
            return self.report(at, None, "a .json file holds a Bundle (NDJSON files end in .ndjson)");
        }
        for (i, entry) in bundle.get("entry").and_then(Json::as_array).into_iter().flatten().enumerate() {
            let at = format!("{at}, entry {}", i + 1);
            match entry.get("resource") {
                Some(resource) => self.take(resource, entry.get("fullUrl").and_then(Json::as_str), &at),
                None => self.report(&at, None, "an entry without a resource"),
            }
        }
    }
}

/// The codings of a resource's code fields: `(system, code)`.
fn codings(kind: &str, resource: &Json) -> Vec<(String, String)> {
    let concepts: Vec<&Json> = match kind {
        "Condition" | "Observation" => resource.get("code").into_iter().collect(),
        "Encounter" => ["type", "reasonCode"]
            .iter()
            .filter_map(|field| resource.get(*field).and_then(Json::as_array))
            .flatten()
            .collect(),
        "MedicationStatement" => resource.get("medicationCodeableConcept").into_iter().collect(),
        _ => Vec::new(),
    };
    concepts
        .into_iter()
        .filter_map(|concept| concept.get("coding").and_then(Json::as_array))
        .flatten()
        .filter_map(|coding| {
            let text = |name: &str| coding.get(name).and_then(Json::as_str).map(str::to_owned);
            Some((text("system")?, text("code")?))
        })
        .collect()
}

/// A resource's clinical date (ISO text, which orders as dates do).
fn date_of<'a>(kind: &str, resource: &'a Json) -> Option<&'a str> {
    let paths: &[&str] = match kind {
        "Condition" => &["/onsetDateTime", "/recordedDate"],
        "Observation" => &["/effectiveDateTime", "/effectivePeriod/start", "/issued"],
        "Encounter" => &["/period/start"],
        "MedicationStatement" => &["/effectiveDateTime", "/effectivePeriod/start", "/dateAsserted"],
        _ => &[],
    };
    paths.iter().find_map(|path| resource.pointer(path).and_then(Json::as_str))
}

/// A Patient's value for `column`; `NaN` when the Patient does not say.
fn patient_value(column: &MappedColumn, patient: &Json) -> Result<f64, String> {
    let text = |name: &str| patient.get(name).and_then(Json::as_str);
    match column.value {
        Value::Gender => match text("gender") {
            None => Ok(f64::NAN),
            Some(gender) => match column.levels.iter().position(|l| l == gender) {
                Some(level) => Ok(level as f64),
                None => Err(format!("gender `{gender}` is not one of the levels {}", column.levels.join(", "))),
            },
        },
        Value::BirthDate | Value::Age => {
            let Some(born) = text("birthDate") else { return Ok(f64::NAN) };
            let day = crate::table::parse_date(born).ok_or_else(|| format!("birthDate `{born}` is not a full date"))?;
            match column.value {
                Value::BirthDate => Ok(day),
                _ => {
                    let at = column.at.as_deref().unwrap_or_default();
                    let years = whole_years(born, at).ok_or_else(|| format!("birthDate `{born}` is after {at}"))?;
                    Ok(f64::from(years))
                }
            }
        }
        _ => Ok(f64::from(patient.get("deceasedBoolean") == Some(&json!(true)) || text("deceasedDateTime").is_some())),
    }
}

/// Whole years from `born` to `at` (both `YYYY-MM-DD`); `None` if `born` is later.
fn whole_years(born: &str, at: &str) -> Option<u32> {
    use chrono::Datelike;
    let (born, at) = (
        chrono::NaiveDate::parse_from_str(born, "%Y-%m-%d").ok()?,
        chrono::NaiveDate::parse_from_str(at, "%Y-%m-%d").ok()?,
    );
    let before_birthday = (at.month(), at.day()) < (born.month(), born.day());
    let years = at.year() - born.year() - i32::from(before_birthday);
    u32::try_from(years).ok()
}

/// Adds one matching resource to a column's value.
fn gather(
    column: &MappedColumn,
    into: &mut Gathered,
    resource: &Json,
    codings: &[(String, String)],
    date: &str,
) -> Result<(), String> {
    let quantity = || -> Result<f64, String> {
        let value = resource.pointer("/valueQuantity/value").and_then(Json::as_f64);
        value.filter(|v| v.is_finite()).ok_or_else(|| "the Observation has no numeric valueQuantity".into())
    };
    match into {
        Gathered::Value(flag) => *flag = 1.0,
        Gathered::Count(count) => *count += 1,
        Gathered::Mean(sum, n) => {
            *sum += quantity()?;
            *n += 1;
        }
        Gathered::Dated(kept) => {
            let value = quantity()?;
            let replace = match (column.value, kept.as_ref()) {
                (_, None) => true,
                (Value::First, Some((when, _))) => date < when.as_str(),
                (_, Some((when, _))) => date >= when.as_str(),
            };
            if replace {
                *kept = Some((date.to_owned(), value));
            }
        }
        Gathered::Code(kept) => {
            let system = column.system.as_deref().unwrap_or_default();
            let code = codings.iter().find(|(s, c)| s == system && column.code_matches(c)).map(|(_, c)| c.clone());
            if let Some(code) = code
                && kept.as_ref().is_none_or(|(when, _)| date < when.as_str())
            {
                *kept = Some((date.to_owned(), code));
            }
        }
    }
    Ok(())
}

/// Reads the files of a FHIR export (`(name, reader)`: `*.ndjson` or a Bundle `*.json`) into a table of patients by
/// `mapping`. Every bad record is reported with its position; any problem means no table.
pub fn read_export<R: BufRead>(files: Vec<(String, R)>, mapping: &Mapping) -> Result<Ingested, IngestError> {
    let mut gathering = Gathering {
        mapping,
        rows: HashMap::new(),
        patients: Vec::new(),
        values: Vec::new(),
        waiting: HashMap::new(),
        resource_types: BTreeSet::new(),
        code_systems: BTreeSet::new(),
        problems: Vec::new(),
        more: 0,
    };
    for (name, reader) in files {
        gathering.file(&name, reader);
    }
    let mut waiting: Vec<(String, String)> =
        gathering.waiting.drain().map(|(reference, (_, first))| (first, reference)).collect();
    waiting.sort();
    for (first, reference) in waiting {
        gathering.report(&first, None, format!("refers to {reference}, which the export does not hold"));
    }
    if gathering.patients.is_empty() && gathering.problems.is_empty() {
        gathering.report("the export", None, "holds no Patient");
    }
    // Each code column's levels: declared (matched by prefix), or the codes seen, in order.
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); mapping.columns.len()];
    for (i, column) in mapping.columns.iter().enumerate().filter(|(_, c)| c.value == Value::Code) {
        levels[i] = match column.levels.is_empty() {
            false => column.levels.clone(),
            true => {
                let seen: BTreeSet<&str> = gathering
                    .values
                    .iter()
                    .filter_map(|row| match &row[i] {
                        Gathered::Code(Some((_, code))) => Some(code.as_str()),
                        _ => None,
                    })
                    .collect();
                seen.into_iter().map(str::to_owned).collect()
            }
        };
        if levels[i].len() > INFERRED_CODES {
            let name = column.name.clone();
            gathering.report(
                "the export",
                Some(&name),
                format!("has more than {INFERRED_CODES} codes; declare levels"),
            );
        }
        if levels[i].is_empty() {
            levels[i] = vec!["(none)".into()];
        }
    }
    let schema = Schema { columns: mapping.schema_with(|i| levels[i].clone()) };
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(gathering.patients.len()); mapping.columns.len()];
    let mut problems = Vec::new();
    for (row, gathered) in gathering.values.iter().enumerate() {
        for (i, (column, value)) in mapping.columns.iter().zip(gathered).enumerate() {
            let number = match value {
                Gathered::Value(v) => *v,
                Gathered::Count(n) => *n as f64,
                Gathered::Dated(kept) => kept.as_ref().map_or(f64::NAN, |(_, v)| *v),
                Gathered::Mean(sum, n) => {
                    if *n == 0 {
                        f64::NAN
                    } else {
                        sum / *n as f64
                    }
                }
                Gathered::Code(None) => f64::NAN,
                Gathered::Code(Some((_, code))) => match levels[i].iter().position(|l| code.starts_with(l.as_str())) {
                    Some(level) => level as f64,
                    None => {
                        let (id, at) = &gathering.patients[row];
                        problems.push((
                            at.clone(),
                            column.name.clone(),
                            format!("Patient `{id}`: code `{code}` is not one of the levels {}", levels[i].join(", ")),
                        ));
                        f64::NAN
                    }
                },
            };
            let number = match column.kind {
                Kind::Integer if number.is_finite() => number.round(),
                _ => number,
            };
            values[i].push(number);
        }
    }
    for (at, column, message) in problems {
        gathering.report(&at, Some(&column), message);
    }
    if !gathering.problems.is_empty() {
        return Err(IngestError { problems: gathering.problems, more: gathering.more });
    }
    let rows = gathering.patients.len();
    Ok(Ingested {
        table: Table { schema, rows, values },
        resource_types: gathering.resource_types,
        code_systems: gathering.code_systems,
    })
}

/// The DCAT / HealthDCAT-AP properties of an ingested export: the table's (rows, columns, age range), the patients
/// as `numberOfUniqueIndividuals`, the resource types as the FHIR R4 profiles it conforms to, and the code systems.
pub fn derived_properties(ingested: &Ingested) -> serde_json::Map<String, Json> {
    let mut properties = ingested.table.derived_properties();
    properties.insert("numberOfUniqueIndividuals".into(), json!(ingested.table.rows));
    let profiles: Vec<String> =
        ingested.resource_types.iter().map(|kind| format!("http://hl7.org/fhir/StructureDefinition/{kind}")).collect();
    properties.insert("conformsTo".into(), json!(profiles));
    properties.insert("hasCodingSystem".into(), json!(ingested.code_systems));
    properties
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn read(files: Vec<(String, String)>, mapping: &Json) -> Result<Ingested, IngestError> {
        let files = files.into_iter().map(|(name, text)| (name, std::io::Cursor::new(text))).collect();
        read_export(files, &Mapping::from_json(mapping).unwrap())
    }

    #[test]
    fn a_synthetic_export_reads_back_as_its_cohort() {
        let cohort = synth::cohort(400, 1, 11);
        let mut files = synth::fhir_export(400, 1, 11);
        // The order of the files does not matter: resources may come before their patients.
        files.reverse();
        let ingested = read(files, &synth::fhir_mapping()).unwrap();
        let table = &ingested.table;
        assert_eq!(table.rows, 400);
        for name in ["age", "sex", "hba1c", "bmi", "smoker", "hypertension", "ckd", "diagnosis", "readmitted"] {
            let (got, _) = table.schema.column(name).unwrap();
            let (want, _) = cohort.schema.column(name).unwrap();
            assert_eq!(table.values[got], cohort.values[want], "{name}");
        }
        let encounters = &table.values[table.schema.column("encounters").unwrap().0];
        let readmitted = &cohort.values[cohort.schema.column("readmitted").unwrap().0];
        assert!(encounters.iter().zip(readmitted).all(|(e, r)| *e == 1.0 + r));
        let types: Vec<&str> = ingested.resource_types.iter().map(String::as_str).collect();
        assert_eq!(types, ["Condition", "Encounter", "MedicationStatement", "Observation", "Patient"]);
        let properties = derived_properties(&ingested);
        let systems = properties["hasCodingSystem"].to_string();
        assert!(systems.contains(synth::LOINC) && systems.contains(synth::SNOMED) && systems.contains(synth::ICD10));
        assert!(properties["conformsTo"].to_string().contains("StructureDefinition/Observation"));
        assert_eq!(properties["numberOfUniqueIndividuals"], 400);
    }

    #[test]
    fn every_bad_record_is_named_by_its_file_and_line_or_entry_and_nothing_is_read() {
        let patients = concat!(
            r#"{"resourceType": "Patient", "id": "a", "gender": "female", "birthDate": "1960-06-15"}"#,
            "\n",
            "{not json\n",
            r#"{"resourceType": "Patient", "gender": "male"}"#,
            "\n",
            r#"{"resourceType": "Patient", "id": "b", "gender": "robot", "birthDate": "1970"}"#,
            "\n",
            r#"{"resourceType": "Patient", "id": "a"}"#,
            "\n"
        );
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/a"},
                          "code": {"coding": [{"system": synth::LOINC, "code": "4548-4"}]}}},
            {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/ghost"},
                          "code": {"coding": [{"system": synth::ICD10, "code": "I10"}]}}},
            {"resource": {"resourceType": "Practitioner", "id": "skipped"}},
        ]});
        let files =
            vec![("Patient.ndjson".to_owned(), patients.to_owned()), ("bundle.json".to_owned(), bundle.to_string())];
        let error = read(files, &synth::fhir_mapping()).unwrap_err();
        let said: Vec<String> = error.problems.iter().map(|p| format!("{}: {}", p.position(), p.message)).collect();
        let expected = [
            "Patient.ndjson, line 2: is not JSON",
            "Patient.ndjson, line 3: a Patient without an id",
            "Patient.ndjson, line 4, column `age`: birthDate `1970` is not a full date",
            "Patient.ndjson, line 4, column `sex`: gender `robot` is not one of the levels female, male",
            "Patient.ndjson, line 5: Patient `a` again (first at Patient.ndjson, line 1)",
            "bundle.json, entry 1, column `hba1c`: the Observation has no numeric valueQuantity",
            "bundle.json, entry 2: refers to Patient/ghost, which the export does not hold",
        ];
        assert_eq!(said.len(), expected.len(), "{said:#?}");
        for (said, expected) in said.iter().zip(expected) {
            assert!(said.starts_with(expected), "{said} / {expected}");
        }
    }

    #[test]
    fn a_line_or_bundle_past_its_limit_is_refused_without_being_held() {
        let long = format!("{{\"resourceType\": \"Patient\", \"id\": \"{}\"}}\n", "x".repeat(LONGEST_LINE as usize));
        let next = r#"{"resourceType": "Patient", "id": "b", "gender": "male"}"#;
        let files = vec![("Patient.ndjson".to_owned(), format!("{long}{next}\n{{oops\n"))];
        let error = read(files, &synth::fhir_mapping()).unwrap_err();
        let said: Vec<String> = error.problems.iter().map(|p| format!("{}: {}", p.position(), p.message)).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0], "Patient.ndjson, line 1: is longer than 16 MiB");
        // Reading went on at the next line: line 2 was read, line 3 is named.
        assert!(said[1].starts_with("Patient.ndjson, line 3: is not JSON"), "{said:?}");
    }

    #[test]
    fn a_mapping_is_checked_column_by_column() {
        let bad = |column: Json| Mapping::from_json(&json!({"columns": [column]})).unwrap_err();
        let age = json!({"name": "age", "type": "integer", "resource": "Patient", "value": "age"});
        assert!(bad(age).contains("column `age`: at:"));
        let hba1c = json!({"name": "x", "type": "boolean", "resource": "Observation", "value": "latest"});
        assert!(bad(hba1c).contains("type: float or integer"));
        let code = json!({"name": "dx", "type": "categorical", "resource": "Condition", "value": "code"});
        assert!(bad(code).contains("system"));
        let wrong =
            json!({"name": "g", "type": "categorical", "resource": "Encounter", "value": "gender", "levels": ["f"]});
        assert!(bad(wrong).contains("a patient's"));
        let unknown = json!({"name": "p", "type": "integer", "resource": "Procedure", "value": "count"});
        assert!(bad(unknown).contains("resource: one of"));
    }
}
