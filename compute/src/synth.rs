//! `hanse synth`: synthetic patient cohorts for demonstrations and tests. No real patient data exists anywhere in
//! Hanse; these cohorts look like a hospital's diabetes register and are the same for the same seed and site.
//!
//! Each patient has an age, sex, BMI, HbA1c, systolic blood pressure, LDL cholesterol, eGFR, smoking status,
//! comorbidities (hypertension, chronic kidney disease), a principal diagnosis (ICD-10), an admission date and an
//! outcome — readmission within 30 days — drawn from a logistic model with the coefficients in [`TRUE_MODEL`]. Sites
//! differ in age, BMI, smoking and the mix of diagnoses, as real hospitals do.

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;

use super::table::{Schema, Table};

/// The principal diagnoses (ICD-10): type 2 and type 1 diabetes, essential hypertension, chronic ischaemic heart
/// disease, COPD, chronic kidney disease.
pub const DIAGNOSES: [&str; 6] = ["E11", "E10", "I10", "I25", "J44", "N18"];

/// The outcome's log-odds: intercept, then per covariate (age in years, male, BMI, HbA1c %, systolic mmHg, LDL
/// mmol/l, eGFR ml/min, smoker, hypertension, chronic kidney disease).
pub const TRUE_MODEL: [(&str, f64); 11] = [
    ("(intercept)", -7.2),
    ("age", 0.025),
    ("sex=M", 0.30),
    ("bmi", 0.04),
    ("hba1c", 0.22),
    ("systolic_bp", 0.008),
    ("ldl", 0.12),
    ("egfr", -0.008),
    ("smoker", 0.45),
    ("hypertension", 0.35),
    ("ckd", 0.55),
];

/// The cohort's columns.
pub fn schema() -> Schema {
    let diagnoses: Vec<&str> = DIAGNOSES.to_vec();
    Schema::from_json(&json!({"columns": [
        {"name": "patient_id", "type": "integer", "analysable": false, "description": "pseudonymous record number"},
        {"name": "age", "type": "integer", "description": "age at admission, years"},
        {"name": "sex", "type": "categorical", "levels": ["F", "M"]},
        {"name": "bmi", "type": "float", "description": "body-mass index, kg/m²"},
        {"name": "hba1c", "type": "float", "description": "HbA1c, %"},
        {"name": "systolic_bp", "type": "float", "description": "systolic blood pressure, mmHg"},
        {"name": "ldl", "type": "float", "nullable": true, "description": "LDL cholesterol, mmol/l (not always measured)"},
        {"name": "egfr", "type": "float", "description": "estimated glomerular filtration rate, ml/min/1.73m²"},
        {"name": "smoker", "type": "boolean"},
        {"name": "hypertension", "type": "boolean"},
        {"name": "ckd", "type": "boolean", "description": "chronic kidney disease"},
        {"name": "diagnosis", "type": "categorical", "levels": diagnoses, "description": "principal diagnosis, ICD-10"},
        {"name": "admitted", "type": "date"},
        {"name": "readmitted", "type": "boolean", "description": "readmitted within 30 days"}
    ]}))
    .expect("the cohort schema is valid")
}

/// How one site's patients differ from the others'.
struct Site {
    age_mean: f64,
    bmi_mean: f64,
    smoking: f64,
    /// Weights of [`DIAGNOSES`].
    diagnoses: [f64; 6],
    /// Share of LDL values missing.
    ldl_missing: f64,
}

fn site(index: u32) -> Site {
    let shift = f64::from(index % 5);
    Site {
        age_mean: 58.0 + 4.0 * shift,
        bmi_mean: 27.5 + 0.8 * shift,
        smoking: 0.18 + 0.04 * shift,
        diagnoses: [0.55 - 0.05 * shift, 0.08, 0.15 + 0.03 * shift, 0.1, 0.07, 0.05 + 0.02 * shift],
        ldl_missing: 0.05 * shift,
    }
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd).expect("a positive standard deviation").sample(rng)
}

fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut at = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if at < *w {
            return i;
        }
        at -= w;
    }
    weights.len() - 1
}

/// `rows` patients of site `site`, reproducible from `seed`.
pub fn cohort(rows: usize, site_index: u32, seed: u64) -> Table {
    let schema = schema();
    let site = site(site_index);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(site_index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut values = vec![Vec::with_capacity(rows); schema.columns.len()];
    let first_day = super::table::parse_date("2023-01-01").expect("a date");
    for i in 0..rows {
        let age = normal(&mut rng, site.age_mean, 13.0).clamp(18.0, 95.0).round();
        let male = f64::from(rng.random_bool(0.52));
        let bmi = normal(&mut rng, site.bmi_mean + 0.8 * male, 4.5).clamp(16.0, 55.0);
        let diagnosis = pick(&mut rng, &site.diagnoses);
        let diabetic = diagnosis <= 1;
        let hba1c =
            normal(&mut rng, if diabetic { 7.6 } else { 5.7 }, if diabetic { 1.3 } else { 0.5 }).clamp(4.0, 15.0);
        let systolic = normal(&mut rng, 118.0 + 0.45 * age, 15.0).clamp(85.0, 220.0);
        let ldl = normal(&mut rng, 3.0, 0.9).clamp(0.8, 8.0);
        let egfr = normal(&mut rng, 118.0 - 0.75 * age, 14.0).clamp(8.0, 130.0);
        let smoker = f64::from(rng.random_bool(site.smoking));
        let hypertension = f64::from(diagnosis == 2 || rng.random_bool(((systolic - 110.0) / 80.0).clamp(0.05, 0.9)));
        let ckd = f64::from(diagnosis == 5 || egfr < 60.0 && rng.random_bool(0.6));
        let covariates = [age, male, bmi, hba1c, systolic, ldl, egfr, smoker, hypertension, ckd];
        let eta = TRUE_MODEL[0].1 + covariates.iter().zip(&TRUE_MODEL[1..]).map(|(x, (_, b))| x * b).sum::<f64>();
        let readmitted = f64::from(rng.random::<f64>() < 1.0 / (1.0 + (-eta).exp()));
        let ldl =
            if rng.random_bool(site.ldl_missing.clamp(0.0, 1.0)) { f64::NAN } else { (ldl * 100.0).round() / 100.0 };
        let admitted = first_day + f64::from(rng.random_range(0..730u32));
        let row = [
            (i + 1) as f64,
            age,
            male,
            (bmi * 10.0).round() / 10.0,
            (hba1c * 10.0).round() / 10.0,
            systolic.round(),
            ldl,
            egfr.round(),
            smoker,
            hypertension,
            ckd,
            diagnosis as f64,
            admitted,
            readmitted,
        ];
        for (column, value) in values.iter_mut().zip(row) {
            column.push(value);
        }
    }
    Table { schema, rows, values }
}

/// Writes a table as CSV (the form `hanse dataset ingest` reads).
pub fn write_csv(table: &Table, out: impl Write) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(table.schema.columns.iter().map(|c| c.name.as_str()))?;
    let mut record = Vec::with_capacity(table.schema.columns.len());
    for row in 0..table.rows {
        record.clear();
        for (column, values) in table.schema.columns.iter().zip(&table.values) {
            record.push(match column.render(values[row]) {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        }
        writer.write_record(&record)?;
    }
    writer.flush()
}

/// LOINC, SNOMED CT and ICD-10 as FHIR names them.
pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// The date a FHIR cohort's ages are taken at: each patient is born on 15 June, `age + 1` years before it.
pub const FHIR_AGE_AT: &str = "2025-01-01";

/// The cohort of [`cohort`] as a FHIR R4 bulk export: one NDJSON file per resource type (`Patient.ndjson`, ...). Per
/// patient: a Patient (gender, birth date giving the cohort's age at [`FHIR_AGE_AT`]); Observations of HbA1c, BMI
/// and systolic pressure (LOINC); Conditions for smoking (SNOMED CT 77176002), hypertension (ICD-10 I10) and chronic
/// kidney disease (N18); the admission's Encounter with its principal diagnosis (ICD-10) and, if readmitted, a
/// second one (SNOMED CT 417005, hospital re-admission); metformin (MedicationStatement) for type 2 diabetes.
pub fn fhir_export(rows: usize, site_index: u32, seed: u64) -> Vec<(String, String)> {
    use std::fmt::Write as _;
    let table = cohort(rows, site_index, seed);
    let column = |name: &str| table.schema.column(name).expect("a cohort column").0;
    let at = |name: &str, row: usize| table.values[column(name)][row];
    let mut files: Vec<(String, String)> = ["Patient", "Observation", "Condition", "Encounter", "MedicationStatement"]
        .iter()
        .map(|k| (format!("{k}.ndjson"), String::new()))
        .collect();
    let mut add = |file: usize, resource: serde_json::Value| {
        let _ = writeln!(files[file].1, "{resource}");
    };
    for row in 0..rows {
        let id = format!("s{site_index}-{}", row + 1);
        let subject = json!({"reference": format!("Patient/{id}")});
        let admitted = super::table::Column {
            name: String::new(),
            kind: super::table::Kind::Date,
            levels: vec![],
            nullable: false,
            analysable: true,
            description: None,
        }
        .render(at("admitted", row));
        let born = format!("{}-06-15", 2024 - at("age", row) as i64);
        let gender = if at("sex", row) == 1.0 { "male" } else { "female" };
        add(0, json!({"resourceType": "Patient", "id": id, "gender": gender, "birthDate": born}));
        let mut observation = |n: usize, code: &str, value: f64, unit: &str| {
            add(
                1,
                json!({"resourceType": "Observation", "id": format!("{id}-o{n}"), "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": subject,
                "effectiveDateTime": admitted, "valueQuantity": {"value": value, "unit": unit}}),
            );
        };
        observation(1, "4548-4", at("hba1c", row), "%");
        observation(2, "39156-5", at("bmi", row), "kg/m2");
        observation(3, "8480-6", at("systolic_bp", row), "mm[Hg]");
        let conditions = [("smoker", SNOMED, "77176002"), ("hypertension", ICD10, "I10"), ("ckd", ICD10, "N18")];
        for (n, (name, system, code)) in conditions.iter().enumerate() {
            if at(name, row) == 1.0 {
                add(
                    2,
                    json!({"resourceType": "Condition", "id": format!("{id}-c{n}"), "subject": subject,
                    "code": {"coding": [{"system": system, "code": code}]}, "recordedDate": admitted}),
                );
            }
        }
        let diagnosis = DIAGNOSES[at("diagnosis", row) as usize];
        add(
            3,
            json!({"resourceType": "Encounter", "id": format!("{id}-e1"), "status": "finished",
            "class": {"code": "IMP"}, "subject": subject, "period": {"start": admitted},
            "reasonCode": [{"coding": [{"system": ICD10, "code": diagnosis}]}]}),
        );
        if at("readmitted", row) == 1.0 {
            add(
                3,
                json!({"resourceType": "Encounter", "id": format!("{id}-e2"), "status": "finished",
                "class": {"code": "IMP"}, "subject": subject,
                "type": [{"coding": [{"system": SNOMED, "code": "417005"}]}]}),
            );
        }
        if diagnosis == "E11" {
            add(
                4,
                json!({"resourceType": "MedicationStatement", "id": format!("{id}-m1"), "status": "active",
                "subject": subject, "medicationCodeableConcept":
                {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]}}),
            );
        }
    }
    files
}

/// The mapping that reads [`fhir_export`] back into the cohort's model columns.
pub fn fhir_mapping() -> serde_json::Value {
    json!({"columns": [
        {"name": "age", "type": "integer", "resource": "Patient", "value": "age", "at": FHIR_AGE_AT},
        {"name": "sex", "type": "categorical", "resource": "Patient", "value": "gender", "levels": ["female", "male"]},
        {"name": "hba1c", "type": "float", "resource": "Observation", "system": LOINC, "codes": ["4548-4"], "value": "latest"},
        {"name": "bmi", "type": "float", "resource": "Observation", "system": LOINC, "codes": ["39156-5"], "value": "latest"},
        {"name": "smoker", "type": "boolean", "resource": "Condition", "system": SNOMED, "codes": ["77176002"], "value": "exists"},
        {"name": "hypertension", "type": "boolean", "resource": "Condition", "system": ICD10, "codes": ["I10"], "value": "exists"},
        {"name": "ckd", "type": "boolean", "resource": "Condition", "system": ICD10, "codes": ["N18"], "value": "exists"},
        {"name": "diagnosis", "type": "categorical", "resource": "Encounter", "system": ICD10, "value": "code", "levels": DIAGNOSES},
        {"name": "encounters", "type": "integer", "resource": "Encounter", "value": "count"},
        {"name": "readmitted", "type": "boolean", "resource": "Encounter", "system": SNOMED, "codes": ["417005"], "value": "exists"}
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_cohort_and_sites_differ() {
        let a = cohort(500, 0, 7);
        assert_eq!(a, cohort(500, 0, 7));
        let b = cohort(500, 2, 7);
        let mean = |t: &Table, c: usize| t.values[c].iter().sum::<f64>() / t.rows as f64;
        assert!(mean(&b, 1) > mean(&a, 1) + 4.0, "site 2 is older");
        let readmitted = mean(&a, 13);
        assert!((0.05..0.6).contains(&readmitted), "{readmitted}");
    }

    #[test]
    fn a_cohort_survives_csv_and_ingestion() {
        let table = cohort(200, 1, 3);
        let mut csv = Vec::new();
        write_csv(&table, &mut csv).unwrap();
        let read = super::super::table::read_csv(csv.as_slice(), &schema()).unwrap();
        for (x, y) in read.values.iter().flatten().zip(table.values.iter().flatten()) {
            assert!(x == y || x.is_nan() && y.is_nan());
        }
    }
}
