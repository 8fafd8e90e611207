//! Parquet files (decision 0047): a data lake's tables read against a schema, as CSV files are.
//!
//! The schema's columns are found by name among the file's top-level columns (others are not read); every value is
//! checked against its column's type — integers within ±2⁵³, finite floats, booleans, dates (Parquet `DATE`, or
//! ISO text), categorical levels (text) — and a null is allowed only in a nullable column. Every bad value is
//! reported by row and column, and any problem means no table. [`write_parquet`] writes a table as Parquet (for
//! synthetic data and tests).

use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::types::Type;

use crate::table::{Column, IngestError, Kind, Problem, REPORTED_PROBLEMS, Schema, Table};

/// Whether `bytes` start as a Parquet file does.
pub fn is_parquet(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PAR1")
}

/// Reads a Parquet file against `schema`, of at most `most_cells` values (rows times the schema's columns: a few
/// compressed bytes can stand for millions of rows). Every bad value is reported with its row (from 1) and column;
/// any problem means no table.
pub fn read_parquet<R: ChunkReader + 'static>(
    reader: R,
    schema: &Schema,
    most_cells: u64,
) -> Result<Table, IngestError> {
    let whole = |message: String| IngestError {
        problems: vec![Problem { line: 0, at: Some("the file".into()), column: None, message }],
        more: 0,
    };
    let file = SerializedFileReader::new(reader).map_err(|e| whole(format!("is not a Parquet file: {e}")))?;
    let fields: Vec<String> =
        file.metadata().file_metadata().schema().get_fields().iter().map(|f| f.name().to_owned()).collect();
    let mut positions = Vec::with_capacity(schema.columns.len());
    let missing: Vec<&str> = schema
        .columns
        .iter()
        .filter_map(|column| match fields.iter().position(|f| *f == column.name) {
            Some(at) => {
                positions.push(at);
                None
            }
            None => Some(column.name.as_str()),
        })
        .collect();
    if !missing.is_empty() {
        return Err(whole(format!("has no column {}", missing.join(", "))));
    }
    let declared = u64::try_from(file.metadata().file_metadata().num_rows()).unwrap_or(u64::MAX);
    if declared.saturating_mul(schema.columns.len() as u64) > most_cells {
        return Err(whole(format!("has {declared} rows: more than {most_cells} values in all")));
    }
    let rows = file.get_row_iter(None).map_err(|e| whole(format!("cannot be read: {e}")))?;
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); schema.columns.len()];
    let (mut problems, mut more) = (Vec::new(), 0usize);
    let mut count = 0usize;
    for (index, row) in rows.enumerate() {
        let at = format!("row {}", index + 1);
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                problems.push(Problem { line: 0, at: Some(at), column: None, message: error.to_string() });
                break;
            }
        };
        let fields: Vec<&Field> = row.get_column_iter().map(|(_, field)| field).collect();
        for ((column, &position), out) in schema.columns.iter().zip(&positions).zip(values.iter_mut()) {
            match value(column, fields.get(position).copied().unwrap_or(&Field::Null)) {
                Ok(value) => out.push(value),
                Err(message) => {
                    out.push(f64::NAN);
                    if problems.len() < REPORTED_PROBLEMS {
                        let column = Some(column.name.clone());
                        problems.push(Problem { line: 0, at: Some(at.clone()), column, message });
                    } else {
                        more += 1;
                    }
                }
            }
        }
        count += 1;
    }
    if !problems.is_empty() {
        return Err(IngestError { problems, more });
    }
    if count == 0 {
        return Err(whole("has no rows".into()));
    }
    values.iter_mut().for_each(Vec::shrink_to_fit);
    Ok(Table { schema: schema.clone(), rows: count, values })
}

/// One Parquet value as a column's value.
fn value(column: &Column, field: &Field) -> Result<f64, String> {
    let integer = |v: i128| match v.unsigned_abs() <= 1u128 << 53 {
        true => Ok(v as f64),
        false => Err(format!("{v} is beyond ±2^53")),
    };
    let whole = match field {
        Field::Byte(v) => Some(i128::from(*v)),
        Field::Short(v) => Some(i128::from(*v)),
        Field::Int(v) => Some(i128::from(*v)),
        Field::Long(v) => Some(i128::from(*v)),
        Field::UByte(v) => Some(i128::from(*v)),
        Field::UShort(v) => Some(i128::from(*v)),
        Field::UInt(v) => Some(i128::from(*v)),
        Field::ULong(v) => Some(i128::from(*v)),
        _ => None,
    };
    match (column.kind, field) {
        (_, Field::Null) if column.nullable => Ok(f64::NAN),
        (_, Field::Null) => Err("is null and the column is not nullable".into()),
        (Kind::Integer, _) if whole.is_some() => integer(whole.unwrap_or_default()),
        (Kind::Float, _) if whole.is_some() => integer(whole.unwrap_or_default()),
        (Kind::Float, Field::Float(v)) if v.is_finite() => Ok(f64::from(*v)),
        (Kind::Float, Field::Double(v)) if v.is_finite() => Ok(*v),
        (Kind::Boolean, Field::Bool(v)) => Ok(f64::from(u8::from(*v))),
        (Kind::Date, Field::Date(days)) => Ok(f64::from(*days)),
        (Kind::Date | Kind::Categorical, Field::Str(text)) => column.parse(text),
        (kind, other) => {
            Err(format!("{other} is not a{} {} value", if kind == Kind::Integer { "n" } else { "" }, kind.name()))
        }
    }
}

/// Writes `table` as a Parquet file (Snappy): integers as INT64, floats as DOUBLE, booleans, dates as DATE and
/// categorical levels as UTF-8 text; nullable columns are OPTIONAL.
pub fn write_parquet(table: &Table, out: impl std::io::Write + Send) -> parquet::errors::Result<()> {
    let fields: Vec<Arc<Type>> = table
        .schema
        .columns
        .iter()
        .map(|column| {
            let (physical, logical) = match column.kind {
                Kind::Integer => (Physical::INT64, None),
                Kind::Float => (Physical::DOUBLE, None),
                Kind::Boolean => (Physical::BOOLEAN, None),
                Kind::Date => (Physical::INT32, Some(LogicalType::Date)),
                Kind::Categorical => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            };
            let repetition = if column.nullable { Repetition::OPTIONAL } else { Repetition::REQUIRED };
            Type::primitive_type_builder(&column.name, physical)
                .with_logical_type(logical)
                .with_repetition(repetition)
                .build()
                .map(Arc::new)
        })
        .collect::<parquet::errors::Result<_>>()?;
    let message = Arc::new(Type::group_type_builder("table").with_fields(fields).build()?);
    let properties = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(out, message, properties)?;
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut column_writer) = group.next_column()? {
        let (column, values) = (&table.schema.columns[index], &table.values[index]);
        let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let levels: Vec<i16> = values.iter().map(|v| i16::from(!v.is_nan())).collect();
        let definitions = column.nullable.then_some(levels.as_slice());
        match column.kind {
            Kind::Integer => {
                let data: Vec<i64> = present.iter().map(|v| *v as i64).collect();
                column_writer.typed::<Int64Type>().write_batch(&data, definitions, None)?;
            }
            Kind::Float => {
                column_writer.typed::<DoubleType>().write_batch(&present, definitions, None)?;
            }
            Kind::Boolean => {
                let data: Vec<bool> = present.iter().map(|v| *v != 0.0).collect();
                column_writer.typed::<BoolType>().write_batch(&data, definitions, None)?;
            }
            Kind::Date => {
                let data: Vec<i32> = present.iter().map(|v| *v as i32).collect();
                column_writer.typed::<Int32Type>().write_batch(&data, definitions, None)?;
            }
            Kind::Categorical => {
                let data: Vec<ByteArray> =
                    present.iter().map(|v| ByteArray::from(column.levels[*v as usize].as_str())).collect();
                column_writer.typed::<ByteArrayType>().write_batch(&data, definitions, None)?;
            }
        }
        column_writer.close()?;
        index += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn a_cohort_survives_parquet_and_ingestion() {
        let table = synth::cohort(500, 2, 9);
        let mut bytes = Vec::new();
        write_parquet(&table, &mut bytes).unwrap();
        assert!(is_parquet(&bytes));
        let read = read_parquet(bytes::Bytes::from(bytes.clone()), &synth::schema(), 500 * 14).unwrap();
        assert_eq!(read.rows, 500);
        for (x, y) in read.values.iter().flatten().zip(table.values.iter().flatten()) {
            assert!(x == y || x.is_nan() && y.is_nan());
        }
        // One value more than allowed: refused from the file's metadata, before any row is read.
        let error = read_parquet(bytes::Bytes::from(bytes), &synth::schema(), 500 * 14 - 1).unwrap_err();
        assert!(error.to_string().contains("has 500 rows: more than 6999 values"), "{error}");
    }

    #[test]
    fn bad_values_are_named_by_row_and_column_and_nothing_is_read() {
        // The file says `ldl` may be null and `diagnosis` may be any text; the schema says otherwise.
        let mut table = synth::cohort(40, 0, 1);
        let (ldl, _) = table.schema.column("ldl").unwrap();
        table.values[ldl][6] = f64::NAN;
        let (diagnosis, _) = table.schema.column("diagnosis").unwrap();
        table.schema.columns[diagnosis].levels.push("Z99".into());
        table.values[diagnosis][11] = 6.0;
        let mut bytes = Vec::new();
        write_parquet(&table, &mut bytes).unwrap();
        let mut strict = synth::schema();
        strict.columns[ldl].nullable = false;
        let error = read_parquet(bytes::Bytes::from(bytes), &strict, u64::MAX).unwrap_err();
        let said: Vec<String> = error.problems.iter().map(|p| format!("{}: {}", p.position(), p.message)).collect();
        assert_eq!(
            said,
            [
                "row 7, column `ldl`: is null and the column is not nullable",
                "row 12, column `diagnosis`: `Z99` is not one of the levels E11, E10, I10, I25, J44, N18"
            ],
        );
        // A schema column the file lacks, and a file that is not Parquet.
        let mut wider = synth::schema();
        wider.columns.push(Column { name: "weight".into(), ..wider.columns[3].clone() });
        let mut bytes = Vec::new();
        write_parquet(&synth::cohort(5, 0, 1), &mut bytes).unwrap();
        let missing = read_parquet(bytes::Bytes::from(bytes), &wider, u64::MAX).unwrap_err();
        assert!(missing.to_string().contains("has no column weight"), "{missing}");
        let not = read_parquet(bytes::Bytes::from_static(b"age,sex\n1,F\n"), &synth::schema(), u64::MAX).unwrap_err();
        assert!(not.to_string().contains("is not a Parquet file"), "{not}");
    }
}
