//! The checks Portolan's fuzz targets make, one module per target, each a `check(data)` that
//! panics when the code under test breaks a promise. `fuzz/` runs them under libFuzzer
//! (scripts/fuzz.sh); this crate's tests replay the checked-in corpus and a bounded number of
//! mutations of it, so every target runs in CI.

pub mod backstage_filter;
pub mod descriptor;
pub mod entity;
pub mod fixtures;
pub mod query;
pub mod signature;
pub mod template;

/// A target's check: panics when the code under test breaks a promise on this input.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets` and `fuzz/corpus` name them.
pub const TARGETS: [(&str, Check); 6] = [
    ("backstage_filter", backstage_filter::check),
    ("descriptor", descriptor::check),
    ("entity", entity::check),
    ("query", query::check),
    ("signature", signature::check),
    ("template", template::check),
];
