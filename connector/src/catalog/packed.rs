//! A dataset as the catalogue's views keep it: packed into one buffer (decision 0052).
//!
//! A typed [`Asset`] holds every predicate IRI, literal and datatype in a `String` of its own, in a map node of its
//! own: some 2.9 KB for a typical HealthDCAT-AP description. The views hold one for every dataset, for as long as the
//! connector runs, and use it for little: catalogue filters and asset selectors read a few values, and a dataset's
//! answer is rendered once, when it changes. So the views keep each asset packed: its id, properties, private
//! properties and data address written one after another into a single buffer, the vocabulary every catalogue uses
//! as one byte each, and the namespaces of the others as one byte before the rest. Filters and selectors read values straight from the buffer; the typed asset is made again only
//! where a caller needs it whole ([`PackedAsset::unpack`]).
//!
//! Nothing sends the form, and only the build that packed a buffer reads it back (a graph on disk keeps the views'
//! buffers beside it, [`super::kept`]), so it may change with any release.
//!
//! ```text
//! asset      := str(id) properties(public) properties(private) address
//! properties := n entry{n}             entry := iri(predicate) n term{n}
//! term       := 0 iri | 1 str | 2 str iri(datatype) | 3 str str(language) | 4 str iri str | 5 properties
//! address    := kind (0 HttpData, 1 File, 2 table) [str(resolved path), File only] n (str str){n}
//! iri        := 0 str | k (the k-th IRI of COMMON, k < 128) | 128 + p, str (the p-th of PREFIXES, then the rest)
//! str        := n byte{n}              n := a LEB128 number
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use hanse_self_descriptions::dcat::{self, Properties, Term};
use hanse_vocab::ns::{DCAT, DCT, DSPACE, EDC, FOAF, HEALTHDCATAP, ODRL, RDF, VCARD, XSD};
use serde_json::Value as Json;

use super::model::{Asset, AssetFields, DataAddress, literal_json};

/// The IRIs written as one byte: the predicates Hanse knows, the datatypes its literals take and the EDC names
/// clients write most. Anything else is written out.
static COMMON: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut candidates: Vec<String> = vec![format!("{RDF}type"), format!("{RDF}langString"), format!("{DCAT}Dataset")];
    candidates.extend(dcat::KNOWN_TERMS.iter().map(|(_, iri, _)| (*iri).to_owned()));
    let xsd = [
        "string",
        "integer",
        "nonNegativeInteger",
        "positiveInteger",
        "decimal",
        "double",
        "float",
        "boolean",
        "date",
        "dateTime",
        "gYear",
        "anyURI",
    ];
    candidates.extend(xsd.map(|datatype| format!("{XSD}{datatype}")));
    let edc = ["id", "name", "description", "contenttype", "version", "title", "keyword"];
    candidates.extend(edc.map(|name| format!("{EDC}{name}")));
    candidates.extend(["format", "type", "rights", "provenance", "source"].map(|term| format!("{DCT}{term}")));
    candidates
        .extend(["mediaType", "byteSize", "distribution", "qualifiedRelation"].map(|term| format!("{DCAT}{term}")));
    let mut common: Vec<String> = Vec::new();
    for iri in candidates {
        if !common.contains(&iri) {
            common.push(iri);
        }
    }
    assert!(common.len() < 128, "a common IRI is written as one byte below 128");
    common
});

/// Namespaces written as one byte (128 and above) before the rest of an IRI that is not common; the longest that
/// fits is taken.
const PREFIXES: [&str; 16] = [
    EDC,
    DCAT,
    DCT,
    HEALTHDCATAP,
    XSD,
    RDF,
    FOAF,
    VCARD,
    ODRL,
    DSPACE,
    "http://publications.europa.eu/resource/authority/",
    "http://purl.org/",
    "http://www.w3.org/",
    "https://w3id.org/",
    "https://",
    "http://",
];

/// Each common IRI's byte.
static CODES: LazyLock<HashMap<&'static str, u8>> =
    LazyLock::new(|| COMMON.iter().enumerate().map(|(i, iri)| (iri.as_str(), i as u8 + 1)).collect());

/// The layout above: changed with it, so that buffers kept on disk by a build before are not read.
const FORM: u32 = 1;

const IRI: u8 = 0;
const LITERAL: u8 = 1;
const TYPED: u8 = 2;
const LANGUAGE: u8 = 3;
const TYPED_LANGUAGE: u8 = 4;
const NODE: u8 = 5;

const HTTP: u8 = 0;
const FILE: u8 = 1;
const TABLE: u8 = 2;

/// An asset packed into one shared buffer; cloning it is cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedAsset(Arc<[u8]>);

impl std::fmt::Debug for PackedAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedAsset").field("id", &self.id()).field("bytes", &self.0.len()).finish()
    }
}

impl PackedAsset {
    /// Packs `asset` (its expanded JSON-LD is not kept: the store holds it).
    pub fn pack(asset: &Asset) -> PackedAsset {
        let mut out = Vec::with_capacity(256);
        write_str(&mut out, &asset.id);
        write_properties(&mut out, &asset.properties);
        write_properties(&mut out, &asset.private_properties);
        let fields = match &asset.data_address {
            DataAddress::Http { fields, .. } => {
                out.push(HTTP);
                fields
            }
            DataAddress::File { path, fields } => {
                out.push(FILE);
                write_bytes(&mut out, path.as_os_str().as_bytes());
                fields
            }
            DataAddress::Table { fields, .. } => {
                out.push(TABLE);
                fields
            }
        };
        write_len(&mut out, fields.len());
        for (key, value) in fields {
            write_str(&mut out, key);
            write_str(&mut out, value);
        }
        PackedAsset(Arc::from(out))
    }

    /// The buffer, to keep beside a graph on disk ([`super::kept`]).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A buffer [`PackedAsset::bytes`] gave, read back by the build that wrote it (the same [`PackedAsset::form`]).
    pub(super) fn kept(bytes: Vec<u8>) -> PackedAsset {
        PackedAsset(Arc::from(bytes))
    }

    /// This build's packed form, as one digest: buffers written by a build whose form differs are not read.
    pub fn form() -> String {
        let described = [FORM.to_string(), COMMON.join("\n"), PREFIXES.join("\n")].join("\n\n");
        hanse_core::encode::sha256_hex(described.as_bytes())
    }

    /// The asset's id.
    pub fn id(&self) -> &str {
        Reader::new(&self.0).str()
    }

    /// How many bytes it takes.
    pub fn size(&self) -> usize {
        self.0.len()
    }

    /// The typed asset again (without its expanded JSON-LD, which the store keeps).
    pub fn unpack(&self) -> Asset {
        let mut reader = Reader::new(&self.0);
        let id = reader.str().to_owned();
        let properties = reader.properties();
        let private_properties = reader.properties();
        let (kind, path) = match reader.byte() {
            FILE => (FILE, Some(PathBuf::from(OsStr::from_bytes(reader.bytes())))),
            kind => (kind, None),
        };
        let mut fields = BTreeMap::new();
        for _ in 0..reader.len() {
            let key = reader.str().to_owned();
            fields.insert(key, reader.str().to_owned());
        }
        let setting = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let data_address = match (kind, path) {
            (FILE, Some(path)) => DataAddress::File { path, fields },
            (TABLE, _) => DataAddress::Table { file: setting("file"), fields },
            _ => DataAddress::Http { base_url: setting("baseUrl"), fields },
        };
        Asset { id, properties, private_properties, data_address, expanded: Json::Null }
    }

    /// A reader at the public (`private`: the private) properties.
    fn properties_at(&self, private: bool) -> Reader<'_> {
        let mut reader = Reader::new(&self.0);
        reader.str();
        if private {
            reader.skip_properties();
        }
        reader
    }

    /// The literal values of a public property (by IRI), as [`dcat::texts`] reads them of a typed asset.
    pub fn texts(&self, predicate: &str) -> Vec<&str> {
        let mut texts = Vec::new();
        self.properties_at(false).values_of(predicate, |term| {
            if let Value::Literal(value) = term {
                texts.push(value);
            }
        });
        texts
    }
}

impl AssetFields for PackedAsset {
    fn asset_id(&self) -> &str {
        self.id()
    }

    fn address_field(&self, name: &str) -> Option<&str> {
        let mut reader = self.properties_at(true);
        reader.skip_properties();
        if reader.byte() == FILE {
            reader.bytes();
        }
        for _ in 0..reader.len() {
            let (key, value) = (reader.str(), reader.str());
            if key == name {
                return Some(value);
            }
        }
        None
    }

    fn property_json(&self, private: bool, iri: &str) -> Vec<Json> {
        let mut values = Vec::new();
        self.properties_at(private).values_of(iri, |term| {
            values.push(match term {
                Value::Iri(iri) => Json::String(iri.whole()),
                Value::Literal(value) => literal_json(value),
                Value::Node => Json::Null,
            })
        });
        values
    }
}

fn write_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    write_bytes(out, text.as_bytes());
}

fn write_iri(out: &mut Vec<u8>, iri: &str) {
    if let Some(code) = CODES.get(iri) {
        return out.push(*code);
    }
    let prefix = PREFIXES.iter().enumerate().filter(|(_, p)| iri.starts_with(**p)).max_by_key(|(_, p)| p.len());
    match prefix {
        Some((p, prefix)) => {
            out.push(128 + p as u8);
            write_str(out, &iri[prefix.len()..]);
        }
        None => {
            out.push(0);
            write_str(out, iri);
        }
    }
}

fn write_properties(out: &mut Vec<u8>, properties: &Properties) {
    write_len(out, properties.len());
    for (predicate, terms) in properties {
        write_iri(out, predicate);
        write_len(out, terms.len());
        for term in terms {
            match term {
                Term::Iri(iri) => {
                    out.push(IRI);
                    write_iri(out, iri);
                }
                Term::Literal { value, datatype, language } => {
                    let tag = match (datatype, language) {
                        (None, None) => LITERAL,
                        (Some(_), None) => TYPED,
                        (None, Some(_)) => LANGUAGE,
                        (Some(_), Some(_)) => TYPED_LANGUAGE,
                    };
                    out.push(tag);
                    write_str(out, value);
                    if let Some(datatype) = datatype {
                        write_iri(out, datatype);
                    }
                    if let Some(language) = language {
                        write_str(out, language);
                    }
                }
                Term::Node(properties) => {
                    out.push(NODE);
                    write_properties(out, properties);
                }
            }
        }
    }
}

/// An IRI as the buffer holds it: a namespace and the rest, or (without namespace) whole.
#[derive(Clone, Copy)]
struct Iri<'a> {
    prefix: &'static str,
    rest: &'a str,
}

impl Iri<'_> {
    fn is(&self, iri: &str) -> bool {
        iri.strip_prefix(self.prefix) == Some(self.rest)
    }

    fn whole(self) -> String {
        [self.prefix, self.rest].concat()
    }
}

/// A term as filters read it, borrowed from the buffer.
enum Value<'a> {
    Iri(Iri<'a>),
    Literal(&'a str),
    Node,
}

/// Reads a buffer [`PackedAsset::pack`] wrote. Only `pack` writes one, so a buffer out of form is a bug here: reading
/// it panics rather than answer wrongly.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn byte(&mut self) -> u8 {
        let byte = self.bytes[self.at];
        self.at += 1;
        byte
    }

    fn len(&mut self) -> usize {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let byte = self.byte();
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    fn bytes(&mut self) -> &'a [u8] {
        let len = self.len();
        let bytes = &self.bytes[self.at..self.at + len];
        self.at += len;
        bytes
    }

    fn str(&mut self) -> &'a str {
        std::str::from_utf8(self.bytes()).expect("a packed asset holds text as it was given")
    }

    fn iri(&mut self) -> Iri<'a> {
        match self.byte() {
            0 => Iri { prefix: "", rest: self.str() },
            code @ 128.. => Iri { prefix: PREFIXES[usize::from(code - 128)], rest: self.str() },
            code => Iri { prefix: "", rest: COMMON[usize::from(code) - 1].as_str() },
        }
    }

    /// The next term as filters read it (a nested node is skipped).
    fn value(&mut self) -> Value<'a> {
        match self.byte() {
            IRI => Value::Iri(self.iri()),
            NODE => {
                self.skip_properties();
                Value::Node
            }
            tag => {
                let value = self.str();
                if matches!(tag, TYPED | TYPED_LANGUAGE) {
                    self.iri();
                }
                if matches!(tag, LANGUAGE | TYPED_LANGUAGE) {
                    self.str();
                }
                Value::Literal(value)
            }
        }
    }

    fn term(&mut self) -> Term {
        match self.byte() {
            IRI => Term::Iri(self.iri().whole()),
            NODE => Term::Node(self.properties()),
            tag => {
                let value = self.str().to_owned();
                let datatype = matches!(tag, TYPED | TYPED_LANGUAGE).then(|| self.iri().whole());
                let language = matches!(tag, LANGUAGE | TYPED_LANGUAGE).then(|| self.str().to_owned());
                Term::Literal { value, datatype, language }
            }
        }
    }

    fn properties(&mut self) -> Properties {
        let mut properties = Properties::new();
        for _ in 0..self.len() {
            let predicate = self.iri().whole();
            let terms = (0..self.len()).map(|_| self.term()).collect();
            properties.insert(predicate, terms);
        }
        properties
    }

    fn skip_properties(&mut self) {
        for _ in 0..self.len() {
            self.iri();
            for _ in 0..self.len() {
                self.value();
            }
        }
    }

    /// Calls `found` with each value of `predicate` in the properties at the reader.
    fn values_of(&mut self, predicate: &str, mut found: impl FnMut(Value<'a>)) {
        for _ in 0..self.len() {
            let matching = self.iri().is(predicate);
            for _ in 0..self.len() {
                let value = self.value();
                if matching {
                    found(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn term() -> impl Strategy<Value = Term> {
        let iri = prop_oneof![
            Just(format!("{DCT}title")),
            Just(format!("{XSD}integer")),
            "[a-z:/#é]{0,12}".prop_map(|s| format!("https://example.org/{s}")),
            "[a-zA-Z]{0,12}".prop_map(|s| format!("{EDC}{s}")),
            "[A-Z-]{0,12}".prop_map(|s| format!("http://publications.europa.eu/resource/authority/{s}")),
            "[a-z]{0,4}".prop_map(|s| format!("http{s}")),
        ];
        let leaf = prop_oneof![
            iri.clone().prop_map(Term::Iri),
            ("[ -~é€😀]{0,200}", proptest::option::of(iri), proptest::option::of("[a-z]{2}(-[A-Z]{2})?"))
                .prop_map(|(value, datatype, language)| Term::Literal { value, datatype, language }),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            proptest::collection::btree_map("[a-z]{1,3}", proptest::collection::vec(inner, 1..3), 0..3)
                .prop_map(|map| Term::Node(map.into_iter().map(|(k, v)| (format!("{DCAT}{k}"), v)).collect()))
        })
    }

    fn properties() -> impl Strategy<Value = Properties> {
        let predicate = prop_oneof![
            Just(format!("{DCT}title")),
            Just(format!("{DCAT}keyword")),
            Just(format!("{RDF}type")),
            Just(format!("{EDC}id")),
            "[a-zA-Z]{1,300}".prop_map(|s| format!("{EDC}{s}")),
        ];
        proptest::collection::btree_map(predicate, proptest::collection::vec(term(), 1..4), 0..8)
    }

    fn address() -> impl Strategy<Value = DataAddress> {
        let fields = proptest::collection::btree_map("[a-zA-Z]{1,10}", "[ -~]{0,40}", 0..4);
        prop_oneof![
            fields.clone().prop_map(|mut fields| {
                fields.insert("type".into(), "HttpData".into());
                fields.insert("baseUrl".into(), "https://ehr.example/x".into());
                DataAddress::Http { base_url: "https://ehr.example/x".into(), fields }
            }),
            (fields.clone(), "[a-z/é]{1,30}").prop_map(|(mut fields, path)| {
                fields.insert("type".into(), "File".into());
                fields.insert("path".into(), path.clone());
                DataAddress::File { path: PathBuf::from("/srv/files").join(path), fields }
            }),
            fields.prop_map(|mut fields| {
                let file = format!("{}.table", "a".repeat(64));
                fields.insert("type".into(), super::super::model::TABLE.into());
                fields.insert("file".into(), file.clone());
                DataAddress::Table { file, fields }
            }),
        ]
    }

    fn asset() -> impl Strategy<Value = Asset> {
        ("[ -~é]{1,80}", properties(), properties(), address()).prop_map(
            |(id, properties, private_properties, data_address)| Asset {
                id,
                properties,
                private_properties,
                data_address,
                expanded: Json::Null,
            },
        )
    }

    /// The paths a selector or QuerySpec may ask for, spelled every way a client may spell them.
    fn paths(asset: &Asset) -> Vec<String> {
        let mut paths = vec!["id".to_owned(), "@id".into(), format!("{EDC}id"), "title".into(), "dct:title".into()];
        paths.extend(
            ["dataAddress.type", "dataAddress.baseUrl", "dataAddress.path", "dataAddress.file"].map(String::from),
        );
        for key in asset.properties.keys() {
            paths.push(key.clone());
            paths.push(format!("properties.'{key}'"));
        }
        for key in asset.private_properties.keys() {
            paths.push(format!("privateProperties.{key}"));
        }
        for key in asset.data_address.fields().keys() {
            paths.push(format!("dataAddress.{key}"));
        }
        paths
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Packing keeps everything the views use: unpacked, the asset is the one packed, and filters and keyword
        /// searches read the same values from either form.
        #[test]
        fn a_packed_asset_answers_as_the_typed_one(asset in asset()) {
            let packed = PackedAsset::pack(&asset);
            prop_assert_eq!(packed.unpack(), asset.clone());
            prop_assert_eq!(packed.id(), asset.id.as_str());
            for path in paths(&asset) {
                prop_assert_eq!(AssetFields::field(&packed, &path), AssetFields::field(&asset, &path), "{}", path);
            }
            for predicate in asset.properties.keys().chain([&format!("{DCT}description")]) {
                let typed: Vec<&str> = dcat::texts(&asset.properties, predicate).collect();
                prop_assert_eq!(packed.texts(predicate), typed);
            }
        }
    }

    #[test]
    fn a_typical_dataset_packs_into_little_more_than_its_texts() {
        let body = json!({
            "@id": "dataset-000042",
            "properties": {
                "title": "Cohort 42: diabetes registry extract",
                "description": "Synthetic hospital registry extract with demographics, diagnoses and lab values.",
                "keyword": ["diabetes", "cardiology", "adults"],
                "numberOfRecords": 1042, "minTypicalAge": 18, "maxTypicalAge": 90,
                "theme": "http://publications.europa.eu/resource/authority/data-theme/HEAL",
                "healthCategory": "http://healthdataportal.eu/ns/health#EHR"
            },
            "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.hospital.example/export/42"}
        });
        let asset = Asset::from_body(&body, std::path::Path::new("/srv")).unwrap();
        let packed = PackedAsset::pack(&asset);
        // Every predicate and datatype here is common: one byte each. The texts themselves are about 300 bytes.
        assert!(packed.size() < 400, "{} bytes", packed.size());
        assert_eq!(packed.texts(&format!("{DCAT}keyword")), ["diabetes", "cardiology", "adults"]);
        assert_eq!(AssetFields::field(&packed, "numberOfRecords"), [json!(1042.0)]);
    }
}
