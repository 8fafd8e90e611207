//! Measurements every layer records: a [`Meter`] hands out the `metrics` crate's counters, gauges and histograms from
//! the registry of one connector (decision 0027). A connector owns its registry, so that several connectors in one
//! process (tests, the demo's federation) each count only their own work; a meter without a registry records nothing.
//!
//! Label values must come from a bounded set (states, outcomes, route templates, message types): never an id.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};

/// Where a connector's measurements go. Cheap to clone.
#[derive(Clone, Default)]
pub struct Meter(Option<Arc<dyn Recorder + Send + Sync>>);

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Meter" } else { "Meter(off)" })
    }
}

const METADATA: Metadata<'static> = Metadata::new("hanse", Level::INFO, None);

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())).collect();
    Key::from_parts(name, labels)
}

impl Meter {
    /// A meter recording into `recorder`.
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> Meter {
        Meter(Some(recorder))
    }

    /// A meter that records nothing.
    pub fn off() -> Meter {
        Meter(None)
    }

    /// The counter `name` with `labels`.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        match &self.0 {
            Some(recorder) => recorder.register_counter(&key(name, labels), &METADATA),
            None => Counter::noop(),
        }
    }

    /// The gauge `name` with `labels`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        match &self.0 {
            Some(recorder) => recorder.register_gauge(&key(name, labels), &METADATA),
            None => Gauge::noop(),
        }
    }

    /// The histogram `name` with `labels`.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        match &self.0 {
            Some(recorder) => recorder.register_histogram(&key(name, labels), &METADATA),
            None => Histogram::noop(),
        }
    }

    /// Adds one to the counter `name` with `labels`.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        if self.0.is_some() {
            self.counter(name, labels).increment(1);
        }
    }

    /// Records `value` in the histogram `name` with `labels`.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if self.0.is_some() {
            self.histogram(name, labels).record(value);
        }
    }

    /// Sets the gauge `name` with `labels` to `value`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if self.0.is_some() {
            self.gauge(name, labels).set(value);
        }
    }

    /// Runs `work` with this meter's registry as the `metrics` macros' recorder (for libraries that record through the
    /// macros); without a registry, `work` runs and records nothing.
    pub fn scope<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.0 {
            Some(recorder) => metrics::with_local_recorder(recorder.as_ref(), work),
            None => metrics::with_local_recorder(&metrics::NoopRecorder, work),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Meter;

    #[test]
    fn a_meter_without_a_registry_records_nothing_and_does_not_fail() {
        let meter = Meter::off();
        meter.count("hanse_test_total", &[("outcome", "ok")]);
        meter.observe("hanse_test_seconds", &[], 0.5);
        meter.set("hanse_test", &[], 1.0);
        assert_eq!(format!("{meter:?}"), "Meter(off)");
    }
}
