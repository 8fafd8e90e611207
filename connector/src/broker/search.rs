//! Keyword search over the crawled catalogues, with facets on DCAT / HealthDCAT-AP fields.
//!
//! Words (split on spaces and commas) must all occur, case-insensitively, in a dataset's title, description,
//! keywords or id, as in the DSP catalogue's keyword filter. Filters: `theme` and `healthCategory` (IRIs, any of
//! those given), `country` (the publisher's ISO 3166-1 code), `minAge`/`maxAge` (the dataset's typical age range
//! overlaps the one asked), `minRecords`/`maxRecords` (`numberOfRecords` within). Facets count the datasets that
//! match the whole query. A dataset that gives only one end of its typical age range is taken to be at that end: the
//! other end is unknown, so neither a filter nor a facet claims it for ages it may not cover.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{Entry, PeerCatalog};

/// The age-range facet's buckets (inclusive years).
const AGE_BUCKETS: &[(&str, i64, i64)] = &[("0-17", 0, 17), ("18-64", 18, 64), ("65+", 65, i64::MAX)];
/// The numberOfRecords facet's buckets (inclusive).
const RECORD_BUCKETS: &[(&str, i64, i64)] = &[
    ("<100", 0, 99),
    ("100-999", 100, 999),
    ("1000-9999", 1_000, 9_999),
    ("10000-99999", 10_000, 99_999),
    (">=100000", 100_000, i64::MAX),
];
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 500;

/// A search as asked (query parameters or a JSON body).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchRequest {
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub theme: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub health_category: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub country: Vec<String>,
    #[serde(default)]
    pub min_age: Option<i64>,
    #[serde(default)]
    pub max_age: Option<i64>,
    #[serde(default)]
    pub min_records: Option<i64>,
    #[serde(default)]
    pub max_records: Option<i64>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => one.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        OneOrMany::Many(many) => many,
    })
}

impl SearchRequest {
    /// The request's problems, named by parameter.
    pub fn check(&self) -> Result<(), String> {
        if let Some(limit) = self.limit
            && !(1..=MAX_LIMIT).contains(&limit)
        {
            return Err(format!("limit: must be between 1 and {MAX_LIMIT}"));
        }
        for (name, value) in [
            ("minAge", self.min_age),
            ("maxAge", self.max_age),
            ("minRecords", self.min_records),
            ("maxRecords", self.max_records),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(format!("{name}: must not be negative"));
            }
        }
        if let (Some(min), Some(max)) = (self.min_age, self.max_age)
            && min > max
        {
            return Err("minAge: must not exceed maxAge".into());
        }
        if let (Some(min), Some(max)) = (self.min_records, self.max_records)
            && min > max
        {
            return Err("minRecords: must not exceed maxRecords".into());
        }
        Ok(())
    }

    /// The request as a JSON body (to ask another broker).
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The query's words, lower-cased, as the word index takes them.
    pub fn words(&self) -> Vec<String> {
        self.q
            .as_deref()
            .unwrap_or_default()
            .split(super::index::separates)
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }
}

/// Whether `entry` of `catalog` matches everything but the text.
fn matches_filters(request: &SearchRequest, catalog: &PeerCatalog, entry: &Entry) -> bool {
    let any = |wanted: &[String], have: &[String]| wanted.is_empty() || wanted.iter().any(|w| have.contains(w));
    if !any(&request.theme, &entry.themes) || !any(&request.health_category, &entry.health_categories) {
        return false;
    }
    if !request.country.is_empty()
        && !catalog.country.as_ref().is_some_and(|c| request.country.iter().any(|w| w.eq_ignore_ascii_case(c)))
    {
        return false;
    }
    if request.min_age.is_some() || request.max_age.is_some() {
        let Some((low, high)) = known_ages(entry) else { return false };
        if request.min_age.is_some_and(|min| high < min) || request.max_age.is_some_and(|max| low > max) {
            return false;
        }
    }
    if request.min_records.is_some() || request.max_records.is_some() {
        let Some(records) = entry.records else { return false };
        if request.min_records.is_some_and(|min| records < min) || request.max_records.is_some_and(|max| records > max)
        {
            return false;
        }
    }
    true
}

/// The typical ages a dataset is known to cover: its range, or the one end it gives.
fn known_ages(entry: &Entry) -> Option<(i64, i64)> {
    match (entry.min_age, entry.max_age) {
        (Some(low), Some(high)) => Some((low, high)),
        (Some(only), None) | (None, Some(only)) => Some((only, only)),
        (None, None) => None,
    }
}

fn count(facet: &mut BTreeMap<String, usize>, key: &str) {
    *facet.entry(key.to_owned()).or_default() += 1;
}

/// Runs a search over `catalogs`: the page of hits asked for, the total and the facets.
pub fn search(catalogs: &BTreeMap<String, Arc<PeerCatalog>>, request: &SearchRequest) -> Json {
    let words = request.words();
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = request.offset.unwrap_or(0);
    let mut total = 0usize;
    let mut results = Vec::new();
    let (mut themes, mut categories, mut countries, mut ages, mut records) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for catalog in catalogs.values() {
        for i in catalog.matching(&words) {
            let entry = &catalog.entries[i as usize];
            if !matches_filters(request, catalog, entry) {
                continue;
            }
            if total >= offset && results.len() < limit {
                results.push(hit(catalog, entry));
            }
            total += 1;
            entry.themes.iter().for_each(|t| count(&mut themes, t));
            entry.health_categories.iter().for_each(|c| count(&mut categories, c));
            if let Some(country) = &catalog.country {
                count(&mut countries, country);
            }
            if let Some((low, high)) = known_ages(entry) {
                for (name, from, to) in AGE_BUCKETS {
                    if low <= *to && high >= *from {
                        count(&mut ages, name);
                    }
                }
            }
            if let Some(n) = entry.records
                && let Some((name, ..)) = RECORD_BUCKETS.iter().find(|(_, from, to)| (*from..=*to).contains(&n))
            {
                count(&mut records, name);
            }
        }
    }
    json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "results": results,
        "facets": {
            "theme": themes,
            "healthCategory": categories,
            "publisherCountry": countries,
            "ageRange": ages,
            "numberOfRecords": records,
        },
    })
}

/// A search hit: where the dataset lives (negotiate there) and its description as its connector gave it.
fn hit(catalog: &PeerCatalog, entry: &Entry) -> Json {
    json!({
        "datasetId": entry.id,
        "title": entry.title,
        "participantId": catalog.did,
        "endpoint": catalog.address,
        "publisherCountry": catalog.country,
        "dataset": serde_json::from_str::<Json>(&entry.json).unwrap_or(Json::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, min_age: Option<i64>, max_age: Option<i64>) -> Entry {
        Entry {
            id: id.into(),
            title: id.into(),
            haystack: format!("register {id}"),
            themes: Vec::new(),
            health_categories: Vec::new(),
            min_age,
            max_age,
            records: None,
            json: Arc::from("{}"),
        }
    }

    fn ages_search(query: &str) -> Json {
        let entries = vec![
            entry("adults-from-18", Some(18), None),
            entry("up-to-90", None, Some(90)),
            entry("children", Some(0), Some(17)),
            entry("no-ages", None, None),
        ];
        let catalog = PeerCatalog {
            did: "did:web:hospital".into(),
            address: "https://hospital.example/protocol/2025-1".into(),
            catalog_id: "catalog".into(),
            service: json!([]),
            country: None,
            words: super::super::index::WordIndex::build(entries.iter().map(|e| e.haystack.as_str())),
            entries,
            digest: String::new(),
        };
        let catalogs = BTreeMap::from([(catalog.did.clone(), Arc::new(catalog))]);
        let request: SearchRequest = serde_urlencoded::from_str(query).unwrap();
        search(&catalogs, &request)
    }

    fn ids(answer: &Json) -> Vec<&str> {
        answer["results"].as_array().unwrap().iter().map(|hit| hit["datasetId"].as_str().unwrap()).collect()
    }

    /// A dataset with one end of its age range given counts at that end only: an adult register that gives only its
    /// lower bound, or a register that gives only its upper one, is not offered to a search for children.
    #[test]
    fn one_known_end_of_an_age_range_is_not_stretched_to_zero_or_infinity() {
        let all = ages_search("q=register");
        assert_eq!(all["facets"]["ageRange"], json!({"0-17": 1, "18-64": 1, "65+": 1}));
        assert_eq!(ids(&ages_search("q=register&maxAge=17")), vec!["children"]);
        assert_eq!(ids(&ages_search("q=register&minAge=65")), vec!["up-to-90"]);
        assert_eq!(ids(&ages_search("q=register&minAge=18&maxAge=64")), vec!["adults-from-18"]);
    }
}
