//! Tabular datasets for compute-to-data: a schema of typed columns, CSV ingestion that reports every bad row by line
//! number and imports all rows or none, and the columnar file the rows are kept in (decision 0012).
//!
//! In memory and on disk every value is an `f64`: integers (within ±2⁵³), booleans (0/1), dates (days since
//! 1970-01-01) and categorical levels (their index in the declared levels) are all exact in a double, and the analyses
//! work on doubles anyway. A missing value (an empty cell of a nullable column) is NaN.
//!
//! The file: the line `HANSE-TABLE 1`, one line of JSON (schema and row count), then each column's values as
//! little-endian doubles. Files are named by the SHA-256 of their content and written to a temporary name first, so a
//! crash never leaves a half-written table under a name that is used.

use std::io::{BufRead, Read};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// The first line of a table file.
const MAGIC: &str = "HANSE-TABLE 1";
/// Bad rows reported before the report says "and N more".
pub(crate) const REPORTED_PROBLEMS: usize = 25;
/// The largest integer a double holds exactly.
const EXACT_INTEGER: i64 = 1 << 53;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Integer,
    Float,
    Boolean,
    Date,
    Categorical,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Float => "float",
            Kind::Boolean => "boolean",
            Kind::Date => "date",
            Kind::Categorical => "categorical",
        }
    }

    /// Integer, float and date columns: compared and summed as numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Integer | Kind::Float | Kind::Date)
    }

    /// Boolean and categorical columns: grouped by level.
    pub fn is_discrete(self) -> bool {
        matches!(self, Kind::Boolean | Kind::Categorical)
    }
}

fn yes() -> bool {
    true
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Categorical: the allowed levels, in order (the first is the reference level of a model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<String>,
    /// Whether a cell may be empty (missing).
    #[serde(default)]
    pub nullable: bool,
    /// Whether jobs may use the column (filters, groups, metrics, model terms). Identifiers and free text: `false`.
    #[serde(default = "yes")]
    pub analysable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Column {
    /// The levels of a discrete column (`false`/`true` for booleans).
    pub fn level_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Boolean => vec!["false".into(), "true".into()],
            _ => self.levels.clone(),
        }
    }

    /// A stored value as JSON (levels by name, dates as ISO dates).
    pub fn render(&self, value: f64) -> Json {
        if value.is_nan() {
            return Json::Null;
        }
        match self.kind {
            Kind::Integer => json!(value as i64),
            Kind::Float => json!(value),
            Kind::Boolean => json!(value != 0.0),
            Kind::Date => json!(date_name(value)),
            Kind::Categorical => json!(self.levels.get(value as usize)),
        }
    }

    /// Reads one cell; `Ok(NaN)` for an empty cell of a nullable column.
    pub fn parse(&self, cell: &str) -> Result<f64, String> {
        let cell = cell.trim();
        if cell.is_empty() {
            return if self.nullable { Ok(f64::NAN) } else { Err("is empty and the column is not nullable".into()) };
        }
        match self.kind {
            Kind::Integer => match cell.parse::<i64>() {
                Ok(v) if v.abs() <= EXACT_INTEGER => Ok(v as f64),
                Ok(_) => Err(format!("`{cell}` is beyond ±2^53")),
                Err(_) => Err(format!("`{cell}` is not an integer")),
            },
            Kind::Float => match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(format!("`{cell}` is not a finite number")),
            },
            Kind::Boolean => match cell.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "t" => Ok(1.0),
                "false" | "0" | "no" | "n" | "f" => Ok(0.0),
                _ => Err(format!("`{cell}` is not a boolean (true/false, 1/0, yes/no)")),
            },
            Kind::Date => parse_date(cell).ok_or_else(|| format!("`{cell}` is not a date (YYYY-MM-DD)")),
            Kind::Categorical => self
                .levels
                .iter()
                .position(|level| level == cell)
                .map(|i| i as f64)
                .ok_or_else(|| format!("`{cell}` is not one of the levels {}", self.levels.join(", "))),
        }
    }

    /// Reads a job's comparison value for this column (a number, a boolean, a level name or an ISO date).
    pub fn value_of(&self, value: &Json) -> Result<f64, String> {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            other => return Err(format!("{other} is not a value of column `{}`", self.name)),
        };
        let parsed = Column { nullable: false, ..self.clone() }.parse(&text);
        parsed.map_err(|e| format!("column `{}`: {e}", self.name))
    }
}

/// Days since 1970-01-01 of an ISO date.
pub fn parse_date(text: &str) -> Option<f64> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some((date - chrono::NaiveDate::default()).num_days() as f64)
}

fn date_name(days: f64) -> String {
    (chrono::NaiveDate::default() + chrono::Duration::days(days as i64)).to_string()
}

/// The columns of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schema {
    pub columns: Vec<Column>,
}

impl Schema {
    /// Reads and checks a schema (JSON); the error names the column.
    pub fn from_json(value: &Json) -> Result<Schema, String> {
        let schema: Schema = serde_json::from_value(value.clone()).map_err(|e| format!("schema: {e}"))?;
        if schema.columns.is_empty() {
            return Err("schema: declares no columns".into());
        }
        let mut seen = std::collections::HashSet::new();
        for column in &schema.columns {
            let name = &column.name;
            if name.is_empty() || !seen.insert(name.as_str()) {
                return Err(format!("schema: column name `{name}` is empty or repeated"));
            }
            match column.kind {
                Kind::Categorical if column.levels.is_empty() => {
                    return Err(format!("schema: categorical column `{name}` needs its levels"));
                }
                Kind::Categorical => {
                    let distinct: std::collections::HashSet<_> = column.levels.iter().collect();
                    if distinct.len() != column.levels.len() || column.levels.iter().any(|l| l.trim().is_empty()) {
                        return Err(format!("schema: column `{name}` has empty or repeated levels"));
                    }
                }
                _ if !column.levels.is_empty() => {
                    return Err(format!("schema: only categorical columns have levels (`{name}`)"));
                }
                _ => {}
            }
        }
        Ok(schema)
    }

    /// The column `name` with its index.
    pub fn column(&self, name: &str) -> Option<(usize, &Column)> {
        self.columns.iter().enumerate().find(|(_, c)| c.name == name)
    }

    /// A schema suggested by a CSV file's header and every row: each column the narrowest kind all its cells read
    /// as (integer, float, boolean, date, else categorical with the values seen as levels, in order of first
    /// appearance), nullable if a cell is empty. A text column with more than [`ANALYSABLE_LEVELS`] values (an
    /// identifier, free text) is kept out of analyses; one with more than [`INFERRED_LEVELS`] is refused, naming it.
    pub fn infer(reader: impl Read) -> Result<Schema, String> {
        let mut csv = csv::ReaderBuilder::new().flexible(false).from_reader(reader);
        let names: Vec<String> =
            csv.headers().map_err(|e| format!("line 1: {e}"))?.iter().map(|h| h.trim().to_owned()).collect();
        if names.is_empty() || names.iter().all(String::is_empty) {
            return Err("line 1: the file has no header".into());
        }
        struct Seen {
            integer: bool,
            float: bool,
            boolean: bool,
            date: bool,
            empty: bool,
            levels: Vec<String>,
            known: std::collections::HashSet<String>,
        }
        let mut seen: Vec<Seen> = names
            .iter()
            .map(|_| Seen {
                integer: true,
                float: true,
                boolean: true,
                date: true,
                empty: false,
                levels: Vec::new(),
                known: Default::default(),
            })
            .collect();
        for (index, record) in csv.records().enumerate() {
            let record = record.map_err(|e| format!("line {}: {e}", index + 2))?;
            for (position, (cell, column)) in record.iter().zip(seen.iter_mut()).enumerate() {
                let cell = cell.trim();
                if cell.is_empty() {
                    column.empty = true;
                    continue;
                }
                column.integer &= cell.parse::<i64>().is_ok_and(|v| v.abs() <= EXACT_INTEGER);
                column.float &= cell.parse::<f64>().is_ok_and(f64::is_finite);
                column.boolean &= matches!(cell.to_ascii_lowercase().as_str(), "true" | "false");
                column.date &= parse_date(cell).is_some();
                if !column.known.contains(cell) {
                    if column.known.len() >= INFERRED_LEVELS {
                        return Err(format!(
                            "column `{}` has more than {INFERRED_LEVELS} distinct values; leave it out of the file",
                            names[position]
                        ));
                    }
                    column.known.insert(cell.to_owned());
                    column.levels.push(cell.to_owned());
                }
            }
        }
        let columns = names
            .into_iter()
            .zip(seen)
            .map(|(name, seen)| {
                let none = seen.levels.is_empty();
                let kind = match () {
                    _ if none => Kind::Categorical,
                    _ if seen.boolean => Kind::Boolean,
                    _ if seen.integer => Kind::Integer,
                    _ if seen.float => Kind::Float,
                    _ if seen.date => Kind::Date,
                    _ => Kind::Categorical,
                };
                let categorical = kind == Kind::Categorical;
                let mut levels = if categorical { seen.levels } else { Vec::new() };
                if none {
                    levels.push("unknown".into());
                }
                Column {
                    name,
                    kind,
                    analysable: !categorical || levels.len() <= ANALYSABLE_LEVELS,
                    levels,
                    nullable: seen.empty,
                    description: None,
                }
            })
            .collect();
        let schema = Schema { columns };
        Schema::from_json(&serde_json::to_value(&schema).map_err(|e| e.to_string())?)
    }
}

/// Text columns with more values than this are inferred as not analysable.
pub const ANALYSABLE_LEVELS: usize = 50;
/// Text columns with more values than this are not inferred at all.
pub const INFERRED_LEVELS: usize = 10_000;

/// A table in memory: one vector of values per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub schema: Schema,
    pub rows: usize,
    pub values: Vec<Vec<f64>>,
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The line in the file (the header is line 1).
    pub line: u64,
    /// Where the record is when a line alone does not say (`Observation.ndjson, line 17`, `bundle.json, entry 3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub message: String,
}

/// Why a file was not imported: nothing of it was.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestError {
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more: usize,
}

impl Problem {
    /// Where the problem is, as a reader says it: `line 4`, `Observation.ndjson, line 17`, with the column if any.
    pub fn position(&self) -> String {
        let place = self.at.clone().unwrap_or_else(|| format!("line {}", self.line));
        match &self.column {
            Some(column) => format!("{place}, column `{column}`"),
            None => place,
        }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nothing was imported: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            let separator = if i == 0 { "" } else { "; " };
            write!(f, "{separator}{}: {}", p.position(), p.message)?;
        }
        if self.more > 0 {
            write!(f, "; and {} more", self.more)?;
        }
        Ok(())
    }
}

impl IngestError {
    fn one(line: u64, message: impl Into<String>) -> IngestError {
        IngestError { problems: vec![Problem { line, at: None, column: None, message: message.into() }], more: 0 }
    }
}

/// Whether `name` is a table file name: the SHA-256 of its content in hex, then `.table`.
pub fn is_table_file(name: &str) -> bool {
    name.strip_suffix(".table").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads a CSV file (with a header row naming every schema column, in any order) against `schema`. Every bad row is
/// reported with its line; any problem means no table.
pub fn read_csv(reader: impl Read, schema: &Schema) -> Result<Table, IngestError> {
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let header = csv.headers().map_err(|e| IngestError::one(1, format!("the header cannot be read: {e}")))?.clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let mut positions = Vec::with_capacity(schema.columns.len());
    let mut problems = Vec::new();
    for column in &schema.columns {
        match names.iter().position(|n| *n == column.name) {
            Some(at) => positions.push(at),
            None => problems.push(format!("column `{}` of the schema is missing", column.name)),
        }
    }
    for name in &names {
        if schema.column(name).is_none() {
            problems.push(format!("column `{name}` is not in the schema"));
        }
    }
    if !problems.is_empty() {
        return Err(IngestError::one(1, problems.join("; ")));
    }
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); schema.columns.len()];
    let mut found = Vec::new();
    let mut more = 0usize;
    let mut report = |problem: Problem| {
        if found.len() < REPORTED_PROBLEMS {
            found.push(problem);
        } else {
            more += 1;
        }
    };
    let mut record = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(line, |p| p.line());
                report(Problem { line, at: None, column: None, message: error.to_string() });
                break;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        if record.len() != names.len() {
            report(Problem {
                line,
                at: None,
                column: None,
                message: format!("has {} fields; the header has {}", record.len(), names.len()),
            });
            continue;
        }
        for ((column, &at), out) in schema.columns.iter().zip(&positions).zip(values.iter_mut()) {
            match column.parse(&record[at]) {
                Ok(value) => out.push(value),
                Err(message) => {
                    report(Problem { line, at: None, column: Some(column.name.clone()), message });
                    out.push(f64::NAN);
                }
            }
        }
        rows += 1;
    }
    if !found.is_empty() {
        return Err(IngestError { problems: found, more });
    }
    if rows == 0 {
        return Err(IngestError::one(2, "the file has no rows"));
    }
    // The columns grew by doubling: what they hold is kept, not what they reserved.
    values.iter_mut().for_each(Vec::shrink_to_fit);
    Ok(Table { schema: schema.clone(), rows, values })
}

/// Rounds an age range out to five-year bands, so the catalogue never shows the exact youngest or oldest patient.
fn age_band(min: f64, max: f64) -> (i64, i64) {
    let low = (min / 5.0).floor() * 5.0;
    let high = (max / 5.0).ceil() * 5.0;
    (low as i64, high.max(low + 5.0) as i64)
}

impl Table {
    /// The DCAT / HealthDCAT-AP properties derived from the data: `numberOfRecords`, the columns with their types
    /// (`hanse:column`), and `minTypicalAge` / `maxTypicalAge` from an `age` column, in five-year bands.
    pub fn derived_properties(&self) -> serde_json::Map<String, Json> {
        let mut properties = serde_json::Map::new();
        properties.insert("numberOfRecords".into(), json!(self.rows));
        let columns: Vec<Json> = self
            .schema
            .columns
            .iter()
            .filter(|c| c.analysable)
            .map(|c| json!(format!("{} ({})", c.name, c.kind.name())))
            .collect();
        properties.insert(format!("{}column", hanse_vocab::ns::HANSE), Json::Array(columns));
        if let Some((at, column)) = self.schema.column("age")
            && column.kind.is_numeric()
        {
            let present = self.values[at].iter().copied().filter(|v| !v.is_nan());
            let (min, max) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if min.is_finite() {
                let (low, high) = age_band(min, max);
                properties.insert("minTypicalAge".into(), json!(low));
                properties.insert("maxTypicalAge".into(), json!(high));
            }
        }
        properties
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.rows * self.values.len() * 8);
        self.write_to(&mut out).expect("writing to memory succeeds");
        out
    }

    /// Writes the table file's bytes (those of [`Table::to_bytes`]) to `out`, without a copy of the table in memory.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let header = json!({"schema": self.schema, "rows": self.rows});
        out.write_all(MAGIC.as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(header.to_string().as_bytes())?;
        out.write_all(b"\n")?;
        for column in &self.values {
            for value in column {
                out.write_all(&value.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// Reads a table file.
    pub fn from_reader(reader: impl Read) -> Result<Table, String> {
        let mut reader = std::io::BufReader::new(reader);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim_end() != MAGIC {
            return Err("not a Hanse table file".into());
        }
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let header: Json = serde_json::from_str(&line).map_err(|e| format!("table header: {e}"))?;
        let schema = Schema::from_json(&header["schema"])?;
        let rows = header["rows"].as_u64().ok_or("table header: no row count")? as usize;
        let mut values = Vec::with_capacity(schema.columns.len());
        let mut bytes = vec![0u8; rows * 8];
        for column in &schema.columns {
            reader.read_exact(&mut bytes).map_err(|e| format!("column `{}`: {e}", column.name))?;
            values.push(bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect());
        }
        Ok(Table { schema, rows, values })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_schema_is_inferred_from_every_row() {
        let csv = "id,age,weight,smoker,seen,sex,note\n\
                   p1,54,81.5,true,2024-01-02,f,\n\
                   p2,61,77,false,2024-02-03,m,late\n\
                   p3,,90.25,true,2024-03-04,f,\n";
        let schema = Schema::infer(csv.as_bytes()).expect("a schema");
        let kinds: Vec<(&str, Kind, bool)> =
            schema.columns.iter().map(|c| (c.name.as_str(), c.kind, c.nullable)).collect();
        assert_eq!(
            kinds,
            [
                ("id", Kind::Categorical, false),
                ("age", Kind::Integer, true),
                ("weight", Kind::Float, false),
                ("smoker", Kind::Boolean, false),
                ("seen", Kind::Date, false),
                ("sex", Kind::Categorical, false),
                ("note", Kind::Categorical, true),
            ]
        );
        assert_eq!(schema.column("sex").unwrap().1.levels, ["f", "m"]);
        let table = read_csv(csv.as_bytes(), &schema).expect("the inferred schema reads its own file");
        assert_eq!(table.rows, 3);
        let many: String = std::iter::once("code\n".to_owned()).chain((0..60).map(|i| format!("c{i}\n"))).collect();
        assert!(!Schema::infer(many.as_bytes()).unwrap().columns[0].analysable, "identifiers stay out of analyses");
        assert!(Schema::infer("a,b\n1\n".as_bytes()).unwrap_err().starts_with("line 2"));
    }

    use super::*;

    fn schema() -> Schema {
        Schema::from_json(&json!({"columns": [
            {"name": "id", "type": "integer", "analysable": false},
            {"name": "age", "type": "integer"},
            {"name": "sex", "type": "categorical", "levels": ["F", "M"]},
            {"name": "hba1c", "type": "float", "nullable": true},
            {"name": "smoker", "type": "boolean"},
            {"name": "admitted", "type": "date"}
        ]}))
        .unwrap()
    }

    #[test]
    fn a_good_file_reads_and_round_trips_through_its_bytes() {
        let csv = "age,id,sex,hba1c,smoker,admitted\n63,1,F,7.1,yes,2024-02-29\n41,2,M,,0,2023-12-01\n";
        let table = read_csv(csv.as_bytes(), &schema()).unwrap();
        assert_eq!(table.rows, 2);
        assert_eq!(table.values[1], vec![63.0, 41.0]);
        assert!(table.values[3][1].is_nan());
        assert_eq!(table.schema.columns[5].render(table.values[5][0]), json!("2024-02-29"));
        assert_eq!(Table::from_reader(table.to_bytes().as_slice()).unwrap().values[2], table.values[2]);
        let properties = table.derived_properties();
        assert_eq!((properties["minTypicalAge"].clone(), properties["maxTypicalAge"].clone()), (json!(40), json!(65)));
        assert_eq!(properties["numberOfRecords"], 2);
    }

    #[test]
    fn every_bad_row_is_named_by_line_and_column() {
        let csv = "id,age,sex,hba1c,smoker,admitted\n1,63,F,7.1,yes,2024-02-29\n2,x,M,,0,2023-12-01\n3,50,D,5,1,2023-13-01\n4,50\n";
        let error = read_csv(csv.as_bytes(), &schema()).unwrap_err();
        let found: Vec<(u64, Option<&str>)> = error.problems.iter().map(|p| (p.line, p.column.as_deref())).collect();
        assert_eq!(found, [(3, Some("age")), (4, Some("sex")), (4, Some("admitted")), (5, None)], "{error}");
        assert!(error.to_string().contains("`D` is not one of the levels F, M"), "{error}");
    }

    #[test]
    fn headers_must_match_the_schema() {
        let error = read_csv("id,age,sex,hba1c,smoker,name\n".as_bytes(), &schema()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("`admitted` of the schema is missing") && text.contains("`name` is not in"), "{text}");
        assert!(Schema::from_json(&json!({"columns": [{"name": "x", "type": "categorical"}]})).is_err());
    }
}
