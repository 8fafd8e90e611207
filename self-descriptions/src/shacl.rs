//! A SHACL Core validator for the constraint components the Gaia-X and DCAT-AP shapes use.
//!
//! A connector checks other participants' self-descriptions at run time, so it needs a validator in Rust. The
//! Rust SHACL crates pull in a second TLS stack and several hundred crates (decision 0013); the shapes Hanse checks
//! against use a small part of SHACL Core, which this module implements: `sh:targetClass`, `sh:property` with IRI
//! paths, `sh:minCount`, `sh:maxCount`, `sh:class`, `sh:datatype`, `sh:nodeKind`, `sh:in`, `sh:hasValue`,
//! `sh:pattern`, `sh:minLength`, `sh:maxLength`, `sh:min/maxInclusive`, `sh:min/maxExclusive`, `sh:or`, `sh:and`,
//! `sh:not`, `sh:node`, `sh:closed` with `sh:ignoredProperties`, and `sh:severity`. A shapes graph that uses
//! anything else is refused when it is read, naming the construct: Hanse never reports conformance it did not check.
//! The test suite runs pySHACL on the same graphs and expects the same verdicts.
//!
//! Like the W3C recommendation (and pySHACL without inference), class membership follows `rdfs:subClassOf` in the
//! data graph and in an optional ontology graph given with the shapes; no other inference is made.

use std::collections::{HashMap, HashSet};
use std::fmt;

use oxrdf::vocab::{rdf, rdfs, xsd};
use oxrdf::{Literal, NamedNode, Term, Triple};
use regex::Regex;

const SH: &str = "http://www.w3.org/ns/shacl#";

/// Prefixes used to print IRIs in messages.
const PREFIXES: &[(&str, &str)] = &[
    ("gx:", "https://w3id.org/gaia-x/2511#"),
    ("gx:", "https://w3id.org/gaia-x/development#"),
    ("schema:", "https://schema.org/"),
    ("vcard:", "http://www.w3.org/2006/vcard/ns#"),
    ("xsd:", "http://www.w3.org/2001/XMLSchema#"),
    ("dcat:", "http://www.w3.org/ns/dcat#"),
    ("dct:", "http://purl.org/dc/terms/"),
    ("foaf:", "http://xmlns.com/foaf/0.1/"),
    ("odrl:", "http://www.w3.org/ns/odrl/2/"),
    ("sh:", SH),
    ("healthdcatap:", "http://healthdataportal.eu/ns/health#"),
];

/// An IRI with a well-known prefix where there is one.
pub fn compact(iri: &str) -> String {
    PREFIXES
        .iter()
        .find_map(|(prefix, ns)| iri.strip_prefix(ns).map(|local| format!("{prefix}{local}")))
        .unwrap_or_else(|| format!("<{iri}>"))
}

fn show(term: &Term) -> String {
    match term {
        Term::NamedNode(n) => compact(n.as_str()),
        Term::BlankNode(b) => format!("_:{}", b.as_str()),
        Term::Literal(l) => format!("\"{}\"", l.value()),
    }
}

/// Why a shapes or data graph could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShaclError {
    #[error("the {0} graph is not valid RDF: {1}")]
    Syntax(&'static str, String),
    #[error("shape {shape} uses {construct}, which Hanse's validator does not implement")]
    Unsupported { shape: String, construct: String },
    #[error("shape {shape}: {message}")]
    Malformed { shape: String, message: String },
}

/// One result of a validation: a focus node that does not conform to a shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The focus node (an IRI, a blank node label or a literal).
    pub focus: String,
    /// The property path, compacted (`gx:registrationNumber`), when the constraint is on a property.
    pub path: Option<String>,
    /// The shape whose constraint failed.
    pub shape: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {path}: {} ({})", self.focus, self.message, self.shape),
            None => write!(f, "{}: {} ({})", self.focus, self.message, self.shape),
        }
    }
}

/// An RDF graph indexed by subject.
#[derive(Debug, Default)]
pub struct Graph {
    by_subject: HashMap<Term, Vec<(NamedNode, Term)>>,
    subjects: Vec<Term>,
}

impl Graph {
    /// Reads Turtle (N-Triples is a subset).
    pub fn from_turtle(text: &str) -> Result<Graph, ShaclError> {
        let mut graph = Graph::default();
        for triple in oxttl::TurtleParser::new().for_slice(text.as_bytes()) {
            graph.insert(triple.map_err(|e| ShaclError::Syntax("data", e.to_string()))?);
        }
        Ok(graph)
    }

    /// Reads N-Quads, ignoring graph names (the union of all graphs).
    pub fn from_nquads(text: &str) -> Result<Graph, ShaclError> {
        let mut graph = Graph::default();
        for quad in oxttl::NQuadsParser::new().for_slice(text.as_bytes()) {
            let quad = quad.map_err(|e| ShaclError::Syntax("data", e.to_string()))?;
            graph.insert(Triple::new(quad.subject, quad.predicate, quad.object));
        }
        Ok(graph)
    }

    /// Adds a triple.
    pub fn insert(&mut self, triple: Triple) {
        let subject = Term::from(triple.subject);
        let entry = self.by_subject.entry(subject.clone()).or_default();
        if entry.is_empty() {
            self.subjects.push(subject);
        }
        if !entry.iter().any(|(p, o)| *p == triple.predicate && *o == triple.object) {
            entry.push((triple.predicate, triple.object));
        }
    }

    fn objects<'a>(&'a self, subject: &Term, predicate: &'a str) -> impl Iterator<Item = &'a Term> + 'a {
        self.by_subject.get(subject).into_iter().flatten().filter(move |(p, _)| p.as_str() == predicate).map(|(_, o)| o)
    }

    fn predicates(&self, subject: &Term) -> impl Iterator<Item = &NamedNode> {
        self.by_subject.get(subject).into_iter().flatten().map(|(p, _)| p)
    }

    fn object<'a>(&'a self, subject: &Term, predicate: &'a str) -> Option<&'a Term> {
        self.objects(subject, predicate).next()
    }

    /// The members of the RDF list starting at `head`.
    fn list(&self, head: &Term) -> Vec<Term> {
        let mut out = Vec::new();
        let mut node = head.clone();
        let mut seen = HashSet::new();
        while node.to_string() != format!("<{}>", rdf::NIL.as_str()) && seen.insert(node.clone()) {
            match self.object(&node, rdf::FIRST.as_str()) {
                Some(first) => out.push(first.clone()),
                None => break,
            }
            match self.object(&node, rdf::REST.as_str()) {
                Some(rest) => node = rest.clone(),
                None => break,
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Iri,
    BlankNode,
    Literal,
    BlankNodeOrIri,
    BlankNodeOrLiteral,
    IriOrLiteral,
}

#[derive(Debug)]
enum Constraint {
    Class(NamedNode),
    Datatype(NamedNode),
    NodeKind(NodeKind),
    In(Vec<Term>),
    HasValue(Term),
    Pattern(Regex),
    MinLength(usize),
    MaxLength(usize),
    Range { bound: f64, inclusive: bool, minimum: bool },
    Or(Vec<usize>),
    And(Vec<usize>),
    Not(usize),
    Node(usize),
}

#[derive(Debug)]
struct Shape {
    label: String,
    path: Option<NamedNode>,
    min_count: usize,
    max_count: Option<usize>,
    constraints: Vec<Constraint>,
    properties: Vec<usize>,
    /// Predicates a closed shape allows.
    closed: Option<HashSet<String>>,
    targets: Vec<NamedNode>,
    violation: bool,
}

/// The predicates in the `sh:` namespace that do not constrain anything (or are handled with their owner).
const NON_VALIDATING: &[&str] = &[
    "name",
    "description",
    "order",
    "group",
    "defaultValue",
    "message",
    "deactivated",
    "targetClass",
    "property",
    "path",
    "minCount",
    "maxCount",
    "closed",
    "ignoredProperties",
    "severity",
    "class",
    "datatype",
    "nodeKind",
    "in",
    "hasValue",
    "pattern",
    "flags",
    "minLength",
    "maxLength",
    "minInclusive",
    "maxInclusive",
    "minExclusive",
    "maxExclusive",
    "or",
    "and",
    "not",
    "node",
];

/// A compiled shapes graph.
#[derive(Debug)]
pub struct Shapes {
    shapes: Vec<Shape>,
    /// Shape node → index, for `sh:node` references and sharing.
    index: HashMap<Term, usize>,
    /// Class → its super-classes (not including itself), from the ontology graph.
    ontology: Graph,
}

impl Shapes {
    /// Compiles the shapes in `shapes` (Turtle); `ontology` (Turtle) supplies `rdfs:subClassOf` for class checks.
    pub fn parse(shapes: &str, ontology: Option<&str>) -> Result<Shapes, ShaclError> {
        let graph = Graph::from_turtle(shapes).map_err(|e| match e {
            ShaclError::Syntax(_, m) => ShaclError::Syntax("shapes", m),
            other => other,
        })?;
        let ontology = match ontology {
            Some(text) => Graph::from_turtle(text).map_err(|e| match e {
                ShaclError::Syntax(_, m) => ShaclError::Syntax("ontology", m),
                other => other,
            })?,
            None => Graph::default(),
        };
        let mut compiled = Shapes { shapes: Vec::new(), index: HashMap::new(), ontology };
        let roots: Vec<Term> = graph
            .subjects
            .iter()
            .filter(|s| {
                graph.objects(s, rdf::TYPE.as_str()).any(|t| t.to_string() == format!("<{SH}NodeShape>"))
                    || graph.object(s, &format!("{SH}targetClass")).is_some()
            })
            .cloned()
            .collect();
        for root in roots {
            compiled.compile(&graph, &root, 0)?;
        }
        Ok(compiled)
    }

    /// The `sh:in` values allowed for `path` by the shape targeting `class`, if it lists them.
    pub fn allowed_values(&self, class: &str, path: &str) -> Vec<String> {
        self.shapes
            .iter()
            .filter(|s| s.targets.iter().any(|t| t.as_str() == class))
            .flat_map(|s| s.properties.iter().map(|p| &self.shapes[*p]))
            .filter(|p| p.path.as_ref().is_some_and(|n| n.as_str() == path))
            .flat_map(|p| p.constraints.iter())
            .flat_map(|c| match c {
                Constraint::In(values) => values
                    .iter()
                    .map(|v| match v {
                        Term::Literal(l) => l.value().to_owned(),
                        other => other.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn compile(&mut self, graph: &Graph, node: &Term, depth: usize) -> Result<usize, ShaclError> {
        if let Some(index) = self.index.get(node) {
            return Ok(*index);
        }
        let label = match node {
            Term::NamedNode(n) => compact(n.as_str()),
            _ => "(anonymous shape)".to_owned(),
        };
        let malformed = |message: String| ShaclError::Malformed { shape: label.clone(), message };
        if depth > 32 {
            return Err(malformed("shapes nest deeper than 32 levels".into()));
        }
        for predicate in graph.predicates(node) {
            if let Some(local) = predicate.as_str().strip_prefix(SH)
                && !NON_VALIDATING.contains(&local)
            {
                return Err(ShaclError::Unsupported { shape: label.clone(), construct: format!("sh:{local}") });
            }
        }
        // Reserve the slot first, so that recursive references terminate.
        let index = self.shapes.len();
        self.index.insert(node.clone(), index);
        self.shapes.push(Shape {
            label: label.clone(),
            path: None,
            min_count: 0,
            max_count: None,
            constraints: Vec::new(),
            properties: Vec::new(),
            closed: None,
            targets: Vec::new(),
            violation: true,
        });
        let sh = |local: &str| format!("{SH}{local}");
        let integer = |local: &str| -> Result<Option<usize>, ShaclError> {
            match graph.object(node, &sh(local)) {
                None => Ok(None),
                Some(Term::Literal(l)) => l
                    .value()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| malformed(format!("sh:{local} `{}` is not a count", l.value()))),
                Some(other) => Err(malformed(format!("sh:{local} {other} is not a literal"))),
            }
        };
        let iri = |local: &str, term: &Term| -> Result<NamedNode, ShaclError> {
            match term {
                Term::NamedNode(n) => Ok(n.clone()),
                other => {
                    Err(ShaclError::Unsupported { shape: label.clone(), construct: format!("sh:{local} {other}") })
                }
            }
        };

        let path = match graph.object(node, &sh("path")) {
            Some(term) => Some(iri("path", term)?),
            None => None,
        };
        let min_count = integer("minCount")?.unwrap_or(0);
        let max_count = integer("maxCount")?;
        let mut constraints = Vec::new();
        for term in graph.objects(node, &sh("class")) {
            constraints.push(Constraint::Class(iri("class", term)?));
        }
        for term in graph.objects(node, &sh("datatype")) {
            constraints.push(Constraint::Datatype(iri("datatype", term)?));
        }
        if let Some(term) = graph.object(node, &sh("nodeKind")) {
            let kind = match iri("nodeKind", term)?.as_str().strip_prefix(SH) {
                Some("IRI") => NodeKind::Iri,
                Some("BlankNode") => NodeKind::BlankNode,
                Some("Literal") => NodeKind::Literal,
                Some("BlankNodeOrIRI") => NodeKind::BlankNodeOrIri,
                Some("BlankNodeOrLiteral") => NodeKind::BlankNodeOrLiteral,
                Some("IRIOrLiteral") => NodeKind::IriOrLiteral,
                _ => return Err(malformed(format!("unknown sh:nodeKind {term}"))),
            };
            constraints.push(Constraint::NodeKind(kind));
        }
        for term in graph.objects(node, &sh("in")) {
            constraints.push(Constraint::In(graph.list(term)));
        }
        for term in graph.objects(node, &sh("hasValue")) {
            constraints.push(Constraint::HasValue(term.clone()));
        }
        for term in graph.objects(node, &sh("pattern")) {
            let Term::Literal(pattern) = term else { return Err(malformed("sh:pattern is not a literal".into())) };
            let flags = match graph.object(node, &sh("flags")) {
                Some(Term::Literal(f)) if f.value().contains('i') => "(?i)",
                _ => "",
            };
            let regex = Regex::new(&format!("{flags}{}", pattern.value()))
                .map_err(|e| malformed(format!("sh:pattern `{}`: {e}", pattern.value())))?;
            constraints.push(Constraint::Pattern(regex));
        }
        if let Some(n) = integer("minLength")? {
            constraints.push(Constraint::MinLength(n));
        }
        if let Some(n) = integer("maxLength")? {
            constraints.push(Constraint::MaxLength(n));
        }
        for (local, inclusive, minimum) in [
            ("minInclusive", true, true),
            ("maxInclusive", true, false),
            ("minExclusive", false, true),
            ("maxExclusive", false, false),
        ] {
            if let Some(term) = graph.object(node, &sh(local)) {
                let bound = match term {
                    Term::Literal(l) => l.value().parse::<f64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| malformed(format!("sh:{local} {term} is not a number")))?;
                constraints.push(Constraint::Range { bound, inclusive, minimum });
            }
        }
        for (local, make) in [("or", true), ("and", false)] {
            for list in graph.objects(node, &sh(local)) {
                let mut members = Vec::new();
                for member in graph.list(list) {
                    members.push(self.compile(graph, &member, depth + 1)?);
                }
                constraints.push(if make { Constraint::Or(members) } else { Constraint::And(members) });
            }
        }
        for term in graph.objects(node, &sh("not")) {
            constraints.push(Constraint::Not(self.compile(graph, term, depth + 1)?));
        }
        for term in graph.objects(node, &sh("node")) {
            constraints.push(Constraint::Node(self.compile(graph, term, depth + 1)?));
        }
        let mut properties = Vec::new();
        let mut declared = HashSet::new();
        for term in graph.objects(node, &sh("property")) {
            let property = self.compile(graph, term, depth + 1)?;
            if let Some(path) = &self.shapes[property].path {
                declared.insert(path.as_str().to_owned());
            }
            properties.push(property);
        }
        let closed = match graph.object(node, &sh("closed")) {
            Some(Term::Literal(l)) if l.value() == "true" => {
                for ignored in graph.objects(node, &sh("ignoredProperties")) {
                    for member in graph.list(ignored) {
                        if let Term::NamedNode(n) = member {
                            declared.insert(n.as_str().to_owned());
                        }
                    }
                }
                Some(declared)
            }
            _ => None,
        };
        let mut targets = Vec::new();
        for term in graph.objects(node, &sh("targetClass")) {
            targets.push(iri("targetClass", term)?);
        }
        let violation = match graph.object(node, &sh("severity")) {
            None => true,
            Some(term) => term.to_string() == format!("<{SH}Violation>"),
        };
        let label = match (&label[..], &path) {
            ("(anonymous shape)", Some(path)) => format!("property shape on {}", compact(path.as_str())),
            _ => label,
        };
        self.shapes[index] =
            Shape { label, path, min_count, max_count, constraints, properties, closed, targets, violation };
        Ok(index)
    }

    /// Validates `data`: every focus node of every targeted shape. An empty answer means the graph conforms.
    pub fn validate(&self, data: &Graph) -> Vec<Violation> {
        let mut out = Vec::new();
        let classes = Classes::new(data, &self.ontology);
        for (index, shape) in self.shapes.iter().enumerate() {
            if shape.targets.is_empty() {
                continue;
            }
            for subject in &data.subjects {
                let targeted = data.objects(subject, rdf::TYPE.as_str()).any(
                    |t| matches!(t, Term::NamedNode(c) if shape.targets.iter().any(|target| classes.is_a(c, target))),
                );
                if targeted {
                    self.evaluate(index, subject, data, &classes, &mut out, 0);
                }
            }
        }
        out
    }

    /// Whether `focus` conforms to shape `index` (results are discarded).
    fn conforms(&self, index: usize, focus: &Term, data: &Graph, classes: &Classes, depth: usize) -> bool {
        let mut scratch = Vec::new();
        self.evaluate(index, focus, data, classes, &mut scratch, depth);
        scratch.is_empty()
    }

    fn evaluate(
        &self,
        index: usize,
        focus: &Term,
        data: &Graph,
        classes: &Classes,
        out: &mut Vec<Violation>,
        depth: usize,
    ) {
        let shape = &self.shapes[index];
        if depth > 64 {
            return;
        }
        let report = |out: &mut Vec<Violation>, message: String| {
            if shape.violation {
                out.push(Violation {
                    focus: show(focus),
                    path: shape.path.as_ref().map(|p| compact(p.as_str())),
                    shape: shape.label.clone(),
                    message,
                });
            }
        };
        let values: Vec<Term> = match &shape.path {
            Some(path) => data.objects(focus, path.as_str()).cloned().collect(),
            None => vec![focus.clone()],
        };
        if values.len() < shape.min_count {
            report(out, format!("needs at least {} value(s), has {}", shape.min_count, values.len()));
        }
        if let Some(max) = shape.max_count
            && values.len() > max
        {
            report(out, format!("allows at most {max} value(s), has {}", values.len()));
        }
        for value in &values {
            for constraint in &shape.constraints {
                if let Some(message) = self.check(constraint, value, data, classes, depth) {
                    report(out, message);
                }
            }
            for property in &shape.properties {
                self.evaluate(*property, value, data, classes, out, depth + 1);
            }
            if let Some(allowed) = &shape.closed {
                for predicate in data.predicates(value) {
                    if !allowed.contains(predicate.as_str()) {
                        report(out, format!("closed shape does not allow {}", compact(predicate.as_str())));
                    }
                }
            }
        }
    }

    fn check(
        &self,
        constraint: &Constraint,
        value: &Term,
        data: &Graph,
        classes: &Classes,
        depth: usize,
    ) -> Option<String> {
        let fail = |message: String| Some(format!("{} {message}", show(value)));
        match constraint {
            Constraint::Class(class) => {
                let ok = data
                    .objects(value, rdf::TYPE.as_str())
                    .any(|t| matches!(t, Term::NamedNode(c) if classes.is_a(c, class)));
                (!ok).then(|| format!("{} is not a {}", show(value), compact(class.as_str())))
            }
            Constraint::Datatype(datatype) => match value {
                Term::Literal(l) if l.datatype() == datatype.as_ref() && well_formed(l) => None,
                Term::Literal(l) if l.datatype() == datatype.as_ref() => {
                    fail(format!("is not a valid {}", compact(datatype.as_str())))
                }
                _ => fail(format!("is not a literal of type {}", compact(datatype.as_str()))),
            },
            Constraint::NodeKind(kind) => {
                let ok = matches!(
                    (kind, value),
                    (NodeKind::Iri, Term::NamedNode(_))
                        | (NodeKind::BlankNode, Term::BlankNode(_))
                        | (NodeKind::Literal, Term::Literal(_))
                        | (NodeKind::BlankNodeOrIri, Term::NamedNode(_) | Term::BlankNode(_))
                        | (NodeKind::BlankNodeOrLiteral, Term::BlankNode(_) | Term::Literal(_))
                        | (NodeKind::IriOrLiteral, Term::NamedNode(_) | Term::Literal(_))
                );
                (!ok).then(|| format!("{} is not of node kind {kind:?}", show(value)))
            }
            Constraint::In(allowed) => (!allowed.contains(value))
                .then(|| format!("{} is not one of the {} allowed values", show(value), allowed.len())),
            Constraint::HasValue(required) => {
                (value != required).then(|| format!("{} is not {}", show(value), show(required)))
            }
            Constraint::Pattern(regex) => match value {
                Term::BlankNode(_) => fail(format!("does not match `{}`", regex.as_str())),
                other => {
                    let text = lexical(other);
                    (!regex.is_match(&text)).then(|| format!("`{text}` does not match `{}`", regex.as_str()))
                }
            },
            Constraint::MinLength(n) => (matches!(value, Term::BlankNode(_)) || lexical(value).chars().count() < *n)
                .then(|| format!("{} is shorter than {n} characters", show(value))),
            Constraint::MaxLength(n) => (matches!(value, Term::BlankNode(_)) || lexical(value).chars().count() > *n)
                .then(|| format!("{} is longer than {n} characters", show(value))),
            Constraint::Range { bound, inclusive, minimum } => {
                let number = match value {
                    Term::Literal(l) => l.value().parse::<f64>().ok(),
                    _ => None,
                };
                let ok = number.is_some_and(|v| match (inclusive, minimum) {
                    (true, true) => v >= *bound,
                    (false, true) => v > *bound,
                    (true, false) => v <= *bound,
                    (false, false) => v < *bound,
                });
                let relation = match (inclusive, minimum) {
                    (true, true) => "at least",
                    (false, true) => "more than",
                    (true, false) => "at most",
                    (false, false) => "less than",
                };
                (!ok).then(|| format!("{} is not {relation} {bound}", show(value)))
            }
            Constraint::Or(members) => (!members.iter().any(|m| self.conforms(*m, value, data, classes, depth + 1)))
                .then(|| format!("{} conforms to none of {} alternatives", show(value), members.len())),
            Constraint::And(members) => (!members.iter().all(|m| self.conforms(*m, value, data, classes, depth + 1)))
                .then(|| format!("{} does not conform to all of {} shapes", show(value), members.len())),
            Constraint::Not(member) => self
                .conforms(*member, value, data, classes, depth + 1)
                .then(|| format!("{} conforms to a shape it must not conform to", show(value))),
            Constraint::Node(member) => (!self.conforms(*member, value, data, classes, depth + 1))
                .then(|| format!("{} does not conform to {}", show(value), self.shapes[*member].label)),
        }
    }
}

fn lexical(term: &Term) -> String {
    match term {
        Term::NamedNode(n) => n.as_str().to_owned(),
        Term::Literal(l) => l.value().to_owned(),
        Term::BlankNode(b) => b.as_str().to_owned(),
    }
}

/// Whether a literal's text is in the lexical space of its (XSD) datatype; other datatypes are taken as written.
fn well_formed(literal: &Literal) -> bool {
    let value = literal.value();
    let datatype = literal.datatype();
    let integer = |v: &str| {
        let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if datatype == xsd::INTEGER || datatype == xsd::LONG || datatype == xsd::INT {
        integer(value)
    } else if datatype == xsd::NON_NEGATIVE_INTEGER {
        integer(value) && !value.starts_with('-') || value == "-0"
    } else if datatype == xsd::POSITIVE_INTEGER {
        integer(value) && !value.trim_start_matches('+').trim_start_matches('0').is_empty() && !value.starts_with('-')
    } else if datatype == xsd::DECIMAL {
        let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
        !digits.is_empty()
            && digits.bytes().filter(|b| *b == b'.').count() <= 1
            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && digits != "."
    } else if datatype == xsd::FLOAT || datatype == xsd::DOUBLE {
        value.parse::<f64>().is_ok() || matches!(value, "INF" | "-INF" | "NaN")
    } else if datatype == xsd::BOOLEAN {
        matches!(value, "true" | "false" | "1" | "0")
    } else if datatype == xsd::DATE {
        value.len() >= 10
            && value.as_bytes()[4] == b'-'
            && value.as_bytes()[7] == b'-'
            && value[..4].bytes().all(|b| b.is_ascii_digit())
    } else if datatype == xsd::DATE_TIME {
        value.len() >= 19 && value.as_bytes()[10] == b'T'
    } else {
        true
    }
}

/// Class membership: `rdfs:subClassOf` from the data graph and the ontology, transitively.
struct Classes {
    supers: HashMap<String, Vec<String>>,
}

impl Classes {
    fn new(data: &Graph, ontology: &Graph) -> Classes {
        let mut supers: HashMap<String, Vec<String>> = HashMap::new();
        for graph in [data, ontology] {
            for subject in &graph.subjects {
                if let Term::NamedNode(class) = subject {
                    for parent in graph.objects(subject, rdfs::SUB_CLASS_OF.as_str()) {
                        if let Term::NamedNode(parent) = parent {
                            supers.entry(class.as_str().to_owned()).or_default().push(parent.as_str().to_owned());
                        }
                    }
                }
            }
        }
        Classes { supers }
    }

    fn is_a(&self, class: &NamedNode, target: &NamedNode) -> bool {
        let mut stack = vec![class.as_str()];
        let mut seen = HashSet::new();
        while let Some(current) = stack.pop() {
            if current == target.as_str() {
                return true;
            }
            if seen.insert(current) {
                stack.extend(self.supers.get(current).into_iter().flatten().map(String::as_str));
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: &str = r#"
        @prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <http://example.org/> .
        @prefix xsd: <http://www.w3.org/2001/XMLSchema#> . @prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
        ex:PersonShape a sh:NodeShape ; sh:targetClass ex:Person ; sh:closed true ; sh:ignoredProperties ( rdf:type ) ;
          sh:property [ sh:path ex:name ; sh:minCount 1 ; sh:maxCount 1 ; sh:datatype xsd:string ] ,
                      [ sh:path ex:age ; sh:datatype xsd:nonNegativeInteger ; sh:maxInclusive 150 ] ,
                      [ sh:path ex:country ; sh:or ( [ sh:in ( "DE" "FR" ) ] [ sh:in ( "DEU" "FRA" ) ] ) ] ,
                      [ sh:path ex:employer ; sh:class ex:Organisation ; sh:nodeKind sh:BlankNodeOrIRI ] ,
                      [ sh:path ex:code ; sh:pattern "^[A-Z]{2}-[0-9]+$" ] .
    "#;

    fn check(data: &str) -> Vec<Violation> {
        let shapes = Shapes::parse(SHAPES, Some("@prefix ex: <http://example.org/> . @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> . ex:Hospital rdfs:subClassOf ex:Organisation .")).unwrap();
        let prefix = "@prefix ex: <http://example.org/> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .";
        shapes.validate(&Graph::from_turtle(&format!("{prefix}\n{data}")).unwrap())
    }

    #[test]
    fn a_conforming_node_has_no_violation() {
        let found = check(
            r#"ex:a a ex:Person ; ex:name "Ada" ; ex:age "36"^^xsd:nonNegativeInteger ; ex:country "FRA" ;
               ex:employer ex:h ; ex:code "DE-42" . ex:h a ex:Hospital ."#,
        );
        assert_eq!(found, vec![]);
    }

    #[test]
    fn each_kind_of_failure_names_its_path() {
        let found = check(
            r#"ex:a a ex:Person ; ex:age "-3"^^xsd:nonNegativeInteger ; ex:country "XX" ; ex:employer ex:h ;
               ex:code "de-1" ; ex:nickname "A" . ex:h a ex:Person ; ex:name "H" ."#,
        );
        let paths: Vec<(Option<&str>, &str)> = found.iter().map(|v| (v.path.as_deref(), v.message.as_str())).collect();
        let has = |path: &str, words: &str| {
            assert!(
                paths.iter().any(|(p, m)| p.is_some_and(|p| p.contains(path)) && m.contains(words)),
                "{path} / {words} in {paths:?}"
            )
        };
        has("name", "at least 1");
        has("age", "not a valid xsd:nonNegativeInteger");
        has("country", "none of 2 alternatives");
        has("employer", "is not a <http://example.org/Organisation>");
        has("code", "does not match");
        assert!(
            found
                .iter()
                .any(|v| v.path.is_none() && v.message.contains("does not allow <http://example.org/nickname>"))
        );
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn unsupported_constructs_are_refused_not_ignored() {
        let shapes = "@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <http://example.org/> .
            ex:S a sh:NodeShape ; sh:targetClass ex:C ; sh:property [ sh:path ex:p ; sh:qualifiedMinCount 1 ] .";
        let error = Shapes::parse(shapes, None).unwrap_err().to_string();
        assert!(error.contains("sh:qualifiedMinCount"), "{error}");
    }
}
