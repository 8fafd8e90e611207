//! Keyword search over the crawled catalogues, with facets on DCAT / HealthDCAT-AP fields.
//!
//! Words (split on spaces and commas) must all occur, case-insensitively, in a dataset's title, description,
//! keywords or id, as in the DSP catalogue's keyword filter. Filters: `theme` and `healthCategory` (IRIs, any of
//! those given), `country` (the publisher's ISO 3166-1 code), `minAge`/`maxAge` (the dataset's typical age range
//! overlaps the one asked), `minRecords`/`maxRecords` (`numberOfRecords` within). Facets count the datasets that
//! match the whole query. A dataset that gives only one end of its typical age range is taken to be at that end: the
//! other end is unknown, so neither a filter nor a facet claims it for ages it may not cover.

use std::collections::{BTreeMap, HashMap};
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
    fn words(&self) -> Vec<String> {
        self.q
            .as_deref()
            .unwrap_or_default()
            .split(super::index::separates)
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }
}

/// The filter and facet fields of one dataset, as a crawl reads them.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub themes: Vec<String>,
    pub health_categories: Vec<String>,
    pub min_age: Option<i64>,
    pub max_age: Option<i64>,
    pub records: Option<i64>,
}

/// The filter and facet fields of a catalogue's entries, one column each (entry `i` at `i`): a search reads the
/// entries it matched in order, with no pointer to follow per dataset. Theme and health-category IRIs are numbered
/// per catalogue and counted by number.
#[derive(Debug, Default)]
pub struct Columns {
    /// The catalogue's theme and health-category IRIs, each once.
    values: Vec<String>,
    themes: super::index::Lists,
    categories: super::index::Lists,
    /// The typical ages each dataset is known to cover ([`known_ages`]).
    ages: Vec<Option<(i64, i64)>>,
    records: Vec<Option<i64>>,
}

impl Columns {
    /// The columns of `fields`, entry `i` being the `i`th.
    pub fn build(fields: Vec<Fields>) -> Columns {
        let mut codes: HashMap<String, u32> = HashMap::new();
        let mut values = Vec::new();
        let mut code = |value: String| {
            *codes.entry(value).or_insert_with_key(|value| {
                values.push(value.clone());
                (values.len() - 1) as u32
            })
        };
        let entries = fields.len();
        let (mut themes, mut categories) = (Vec::new(), Vec::new());
        let (mut ages, mut records) = (Vec::with_capacity(entries), Vec::with_capacity(entries));
        for (i, fields) in fields.into_iter().enumerate() {
            themes.extend(fields.themes.into_iter().map(|t| (i as u32, code(t))));
            categories.extend(fields.health_categories.into_iter().map(|c| (i as u32, code(c))));
            ages.push(known_ages(fields.min_age, fields.max_age));
            records.push(fields.records);
        }
        Columns {
            values,
            themes: super::index::Lists::from_pairs(entries, themes),
            categories: super::index::Lists::from_pairs(entries, categories),
            ages,
            records,
        }
    }

    /// The numbers of those of `wanted` this catalogue has; `None` when nothing is wanted (anything goes).
    fn codes_of(&self, wanted: &[String]) -> Option<Vec<u32>> {
        (!wanted.is_empty())
            .then(|| (0..self.values.len() as u32).filter(|&c| wanted.contains(&self.values[c as usize])).collect())
    }
}

/// The request's filters as one catalogue numbers its values.
struct Filters<'a> {
    request: &'a SearchRequest,
    themes: Option<Vec<u32>>,
    categories: Option<Vec<u32>>,
}

impl Filters<'_> {
    /// `None` when no entry of the catalogue can match (its publisher's country, or a theme or category it lacks).
    fn of<'a>(request: &'a SearchRequest, catalog: &PeerCatalog) -> Option<Filters<'a>> {
        let country = request.country.is_empty()
            || catalog.country.as_ref().is_some_and(|c| request.country.iter().any(|w| w.eq_ignore_ascii_case(c)));
        let columns = &catalog.columns;
        let (themes, categories) = (columns.codes_of(&request.theme), columns.codes_of(&request.health_category));
        let lacking = |codes: &Option<Vec<u32>>| codes.as_ref().is_some_and(Vec::is_empty);
        (country && !lacking(&themes) && !lacking(&categories)).then_some(Filters { request, themes, categories })
    }

    /// Whether entry `i` of `columns` matches everything but the text.
    fn hold(&self, columns: &Columns, i: usize) -> bool {
        let any = |wanted: &Option<Vec<u32>>, have: &[u32]| {
            wanted.as_ref().is_none_or(|wanted| have.iter().any(|c| wanted.contains(c)))
        };
        if !any(&self.themes, columns.themes.get(i)) || !any(&self.categories, columns.categories.get(i)) {
            return false;
        }
        let request = self.request;
        if request.min_age.is_some() || request.max_age.is_some() {
            let Some((low, high)) = columns.ages[i] else { return false };
            if request.min_age.is_some_and(|min| high < min) || request.max_age.is_some_and(|max| low > max) {
                return false;
            }
        }
        if request.min_records.is_some() || request.max_records.is_some() {
            let Some(records) = columns.records[i] else { return false };
            if request.min_records.is_some_and(|min| records < min)
                || request.max_records.is_some_and(|max| records > max)
            {
                return false;
            }
        }
        true
    }
}

/// The typical ages a dataset is known to cover: its range, or the one end it gives.
fn known_ages(min_age: Option<i64>, max_age: Option<i64>) -> Option<(i64, i64)> {
    match (min_age, max_age) {
        (Some(low), Some(high)) => Some((low, high)),
        (Some(only), None) | (None, Some(only)) => Some((only, only)),
        (None, None) => None,
    }
}

/// Counts of one facet's values while a search runs: borrowed keys, no string made per hit.
#[derive(Default)]
struct Tally<'a>(HashMap<&'a str, usize, foldhash::fast::RandomState>);

impl<'a> Tally<'a> {
    fn add(&mut self, key: &'a str, n: usize) {
        *self.0.entry(key).or_default() += n;
    }

    /// A catalogue's counts by value number, under the values' names.
    fn add_counted(&mut self, values: &'a [String], counted: &[usize]) {
        for (value, n) in values.iter().zip(counted).filter(|(_, n)| **n > 0) {
            self.add(value, *n);
        }
    }

    /// The counts by value, as the answer shows them.
    fn sorted(self) -> BTreeMap<&'a str, usize> {
        self.0.into_iter().collect()
    }
}

/// A bucketed facet's counts by bucket name; a bucket no hit falls in is left out, as a value no hit has.
fn buckets(table: &[(&'static str, i64, i64)], counts: &[usize]) -> BTreeMap<&'static str, usize> {
    table.iter().zip(counts).filter(|(_, n)| **n > 0).map(|((name, ..), n)| (*name, *n)).collect()
}

/// Runs a search over `catalogs`: the page of hits asked for, the total and the facets.
pub fn search(catalogs: &BTreeMap<String, Arc<PeerCatalog>>, request: &SearchRequest) -> Json {
    let words = super::index::Words::new(&request.words());
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = request.offset.unwrap_or(0);
    let mut total = 0usize;
    let mut results = Vec::new();
    let (mut themes, mut categories, mut countries) = (Tally::default(), Tally::default(), Tally::default());
    let (mut ages, mut records) = ([0usize; AGE_BUCKETS.len()], [0usize; RECORD_BUCKETS.len()]);
    for catalog in catalogs.values() {
        let Some(filters) = Filters::of(request, catalog) else { continue };
        let columns = &catalog.columns;
        let before = total;
        // This catalogue's counts by value number, named once it is done.
        let (mut theme_counts, mut category_counts) = (vec![0; columns.values.len()], vec![0; columns.values.len()]);
        for i in catalog.matching(&words) {
            let i = i as usize;
            if !filters.hold(columns, i) {
                continue;
            }
            if total >= offset && results.len() < limit {
                results.push(hit(catalog, &catalog.entries[i]));
            }
            total += 1;
            columns.themes.get(i).iter().for_each(|&c| theme_counts[c as usize] += 1);
            columns.categories.get(i).iter().for_each(|&c| category_counts[c as usize] += 1);
            if let Some((low, high)) = columns.ages[i] {
                for (count, (_, from, to)) in ages.iter_mut().zip(AGE_BUCKETS) {
                    if low <= *to && high >= *from {
                        *count += 1;
                    }
                }
            }
            if let Some(n) = columns.records[i]
                && let Some(bucket) = RECORD_BUCKETS.iter().position(|(_, from, to)| (*from..=*to).contains(&n))
            {
                records[bucket] += 1;
            }
        }
        if let Some(country) = &catalog.country
            && total > before
        {
            countries.add(country, total - before);
        }
        themes.add_counted(&columns.values, &theme_counts);
        categories.add_counted(&columns.values, &category_counts);
    }
    json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "results": results,
        "facets": {
            "theme": themes.sorted(),
            "healthCategory": categories.sorted(),
            "publisherCountry": countries.sorted(),
            "ageRange": buckets(AGE_BUCKETS, &ages),
            "numberOfRecords": buckets(RECORD_BUCKETS, &records),
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

    fn entry(id: &str, min_age: Option<i64>, max_age: Option<i64>) -> (Entry, Fields) {
        let entry =
            Entry { id: id.into(), title: id.into(), haystack: format!("register {id}"), json: Arc::from("{}") };
        (entry, Fields { min_age, max_age, ..Fields::default() })
    }

    fn ages_search(query: &str) -> Json {
        let (entries, fields): (Vec<Entry>, Vec<Fields>) = [
            entry("adults-from-18", Some(18), None),
            entry("up-to-90", None, Some(90)),
            entry("children", Some(0), Some(17)),
            entry("no-ages", None, None),
        ]
        .into_iter()
        .unzip();
        let catalog = PeerCatalog {
            did: "did:web:hospital".into(),
            address: "https://hospital.example/protocol/2025-1".into(),
            catalog_id: "catalog".into(),
            service: json!([]),
            country: None,
            words: super::super::index::WordIndex::build(entries.iter().map(|e| e.haystack.as_str())),
            columns: Columns::build(fields),
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
