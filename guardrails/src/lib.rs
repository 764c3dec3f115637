//! Portcullis guardrails: text in, findings out. No pingora or network dependency, so the
//! detectors can be tested, benchmarked and reused on their own.
//!
//! The pieces, in the order a piece of text meets them:
//! - [`rules`]: rule packs (TOML, shipped ones embedded from `guardrails/rules/`), parsed and checked;
//! - [`engine`]: the packs compiled once into an [`Engine`] — a `RegexSet` prefilter, per-rule
//!   regexes, aho-corasick context lists, and [`validators`] that kill false positives;
//! - [`advice`]: the text-level FINANCIAL_ADVICE classifier;
//! - [`policy`]: what to do with each finding (block, redact, pseudonymize, log) and the rewrite;
//! - [`stream`]: the same over text that arrives in pieces, with a bounded hold-back.

pub mod advice;
pub mod engine;
pub mod entity;
pub mod policy;
pub mod rules;
pub mod stream;
pub mod validators;

pub use engine::{Engine, Finding};
pub use entity::{EntityType, UnknownEntityType};
