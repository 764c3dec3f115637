//! Rule packs: TOML files that say what to look for. The shipped packs live in
//! `guardrails/rules/` and are embedded in the binary; operators copy and edit them, and load
//! their own with `[guardrails] rule_packs`. A pack is checked completely when loaded (unknown
//! keys, bad regexes, unknown types or validators are errors naming the pack and the rule).
//!
//! ```toml
//! name = "pii"                      # a later pack with the same name replaces this one
//! description = "…"
//!
//! [[rules]]
//! id = "email"                      # unique within the pack; shown in errors
//! entity = "EMAIL"                  # a canonical entity type
//! pattern = '''[\w.+-]+@[\w-]+(?:\.[\w-]+)+'''   # Rust `regex` syntax
//! group = 1                         # optional: the capture group that is the value
//! validator = "luhn"                # optional: see validators.rs for the names
//! context = ["ssn", "social security"]  # optional: words expected near the value
//! context_required = true           # without one of them nearby, no finding
//! context_before = 40               # bytes before the value searched for context (default 40)
//! context_after = 0                 # bytes after it (default 0)
//! exclude_context = ["aws account"] # optional: words in the same windows that cancel it
//! exclude_nearer = ["blz"]          # optional: words that cancel it when they sit between the
//!                                   # nearest context word before it and the value (another
//!                                   # label: "Konto 1234567890, BLZ 37040044")
//! exclude_value = '\.png$'        # optional regex: a value it matches is not a finding
//! priority = 0                      # on overlapping findings the higher priority wins
//! max_len = 64                      # the longest value this rule can match (bytes)
//! needs_digit = true                # every value holds a digit: the rule then only runs
//!                                   # near digits, which keeps prose fast (max_len <= 64)
//!
//! [[keywords]]                      # literal markers, matched case-insensitively
//! id = "confidential"
//! entity = "CONFIDENTIAL"
//! words = ["internal use only", "attorney-client privileged"]
//! ```

use serde::Deserialize;

use crate::entity::EntityType;
use crate::validators::Validator;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule pack {pack}: {message}")]
    Invalid { pack: String, message: String },
}

impl RuleError {
    pub fn code(&self) -> &'static str {
        "invalid_rule_pack"
    }
}

/// A parsed, checked rule pack.
#[derive(Debug, Clone)]
pub struct RulePack {
    pub name: String,
    pub rules: Vec<Rule>,
    pub keywords: Vec<KeywordRule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub entity: EntityType,
    pub pattern: String,
    pub group: usize,
    pub validator: Option<Validator>,
    pub context: Vec<String>,
    pub context_required: bool,
    pub context_before: usize,
    pub context_after: usize,
    pub exclude_context: Vec<String>,
    pub exclude_nearer: Vec<String>,
    pub exclude_value: Option<String>,
    pub priority: i32,
    pub max_len: usize,
    pub needs_digit: bool,
}

#[derive(Debug, Clone)]
pub struct KeywordRule {
    pub id: String,
    pub entity: EntityType,
    pub words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    keywords: Vec<RawKeywords>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    entity: String,
    pattern: String,
    #[serde(default)]
    group: usize,
    validator: Option<String>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    context_required: bool,
    #[serde(default = "default_context_before")]
    context_before: usize,
    #[serde(default)]
    context_after: usize,
    #[serde(default)]
    exclude_context: Vec<String>,
    #[serde(default)]
    exclude_nearer: Vec<String>,
    exclude_value: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default = "default_max_len")]
    max_len: usize,
    #[serde(default)]
    needs_digit: bool,
}

fn default_context_before() -> usize {
    40
}
fn default_max_len() -> usize {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeywords {
    id: String,
    entity: String,
    words: Vec<String>,
}

/// The longest value a rule may declare: it bounds how much of a stream is held back.
pub const MAX_VALUE_LEN: usize = 4096;

/// The longest value of a `needs_digit` rule: the engine looks this far around each digit.
pub const DIGIT_RULE_MAX_LEN: usize = 64;

/// The packs shipped in `guardrails/rules/`, in load order.
pub const BUILTIN: &[(&str, &str)] = &[
    ("pii.toml", include_str!("../rules/pii.toml")),
    ("bfsi.toml", include_str!("../rules/bfsi.toml")),
    ("secrets.toml", include_str!("../rules/secrets.toml")),
    (
        "confidential.toml",
        include_str!("../rules/confidential.toml"),
    ),
];

pub fn builtin_packs() -> Result<Vec<RulePack>, RuleError> {
    BUILTIN
        .iter()
        .map(|(name, text)| RulePack::parse(name, text))
        .collect()
}

impl RulePack {
    /// Parses and checks a pack; `source_name` (a file name) appears in errors.
    pub fn parse(source_name: &str, toml_text: &str) -> Result<RulePack, RuleError> {
        let invalid = |message: String| RuleError::Invalid {
            pack: source_name.to_string(),
            message,
        };
        let raw: RawPack = toml::from_str(toml_text).map_err(|e| invalid(e.to_string()))?;
        let mut ids = std::collections::HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            if !ids.insert(r.id.clone()) {
                return Err(invalid(format!("rule id {:?} is used twice", r.id)));
            }
            let entity = r
                .entity
                .parse::<EntityType>()
                .map_err(|e| invalid(format!("rule {}: {e}", r.id)))?;
            let compiled = regex::Regex::new(&r.pattern)
                .map_err(|e| invalid(format!("rule {}: bad pattern: {e}", r.id)))?;
            if r.group >= compiled.captures_len() {
                return Err(invalid(format!(
                    "rule {}: group {} does not exist in the pattern",
                    r.id, r.group
                )));
            }
            let validator = match r.validator.as_deref() {
                None => None,
                Some(name) => Some(Validator::from_name(name).ok_or_else(|| {
                    invalid(format!(
                        "rule {}: unknown validator {name:?}; known: {}",
                        r.id,
                        Validator::NAMES
                    ))
                })?),
            };
            if r.needs_digit && r.max_len > DIGIT_RULE_MAX_LEN {
                return Err(invalid(format!(
                    "rule {}: needs_digit rules match at most {DIGIT_RULE_MAX_LEN} bytes (max_len)",
                    r.id
                )));
            }
            if let Some(ex) = &r.exclude_value {
                regex::Regex::new(ex)
                    .map_err(|e| invalid(format!("rule {}: bad exclude_value: {e}", r.id)))?;
            }
            if r.context_required && r.context.is_empty() {
                return Err(invalid(format!(
                    "rule {}: context_required needs a context list",
                    r.id
                )));
            }
            if !r.exclude_nearer.is_empty() && !r.context_required {
                return Err(invalid(format!(
                    "rule {}: exclude_nearer only applies with context_required = true",
                    r.id
                )));
            }
            if r.max_len == 0 || r.max_len > MAX_VALUE_LEN {
                return Err(invalid(format!(
                    "rule {}: max_len must be 1..={MAX_VALUE_LEN}",
                    r.id
                )));
            }
            rules.push(Rule {
                id: r.id,
                entity,
                pattern: r.pattern,
                group: r.group,
                validator,
                context: lower(r.context),
                context_required: r.context_required,
                context_before: r.context_before,
                context_after: r.context_after,
                exclude_context: lower(r.exclude_context),
                exclude_nearer: lower(r.exclude_nearer),
                exclude_value: r.exclude_value,
                priority: r.priority,
                max_len: r.max_len,
                needs_digit: r.needs_digit,
            });
        }
        let mut keywords = Vec::new();
        for k in raw.keywords {
            if !ids.insert(k.id.clone()) {
                return Err(invalid(format!("rule id {:?} is used twice", k.id)));
            }
            let entity = k
                .entity
                .parse::<EntityType>()
                .map_err(|e| invalid(format!("keywords {}: {e}", k.id)))?;
            if k.words.iter().any(|w| w.trim().is_empty()) || k.words.is_empty() {
                return Err(invalid(format!(
                    "keywords {}: words must be non-empty",
                    k.id
                )));
            }
            keywords.push(KeywordRule {
                id: k.id,
                entity,
                words: k.words,
            });
        }
        Ok(RulePack {
            name: raw.name,
            rules,
            keywords,
        })
    }
}

fn lower(words: Vec<String>) -> Vec<String> {
    words.into_iter().map(|w| w.to_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_packs_parse() {
        let packs = builtin_packs().unwrap();
        assert!(packs.iter().any(|p| p.name == "pii"));
    }

    #[test]
    fn errors_name_the_pack_and_rule() {
        let bad = r#"
name = "x"
[[rules]]
id = "r1"
entity = "EMAIL"
pattern = "("
"#;
        let err = RulePack::parse("custom.toml", bad).unwrap_err().to_string();
        assert!(err.contains("custom.toml") && err.contains("r1"), "{err}");
        let bad = "name = \"x\"\n[[rules]]\nid = \"r\"\nentity = \"MAIL\"\npattern = \"a\"\n";
        assert!(RulePack::parse("p", bad)
            .unwrap_err()
            .to_string()
            .contains("MAIL"));
        let bad = "name = \"x\"\n[[rules]]\nid = \"r\"\nentity = \"EMAIL\"\npattern = \"a\"\nvalidator = \"crc\"\n";
        assert!(RulePack::parse("p", bad)
            .unwrap_err()
            .to_string()
            .contains("luhn"));
        let bad = "name = \"x\"\n[[rules]]\nid = \"r\"\nentity = \"EMAIL\"\npattern = \"a\"\nexclude_nearer = [\"b\"]\n";
        assert!(RulePack::parse("p", bad)
            .unwrap_err()
            .to_string()
            .contains("exclude_nearer"));
        let bad = "name = \"x\"\nfoo = 1\n";
        assert!(RulePack::parse("p", bad)
            .unwrap_err()
            .to_string()
            .contains("foo"));
    }
}
