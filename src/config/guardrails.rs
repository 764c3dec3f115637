//! `[guardrails]`: the compiled detection engine and the named policies tenants and keys select.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use guardrails::policy::{Action, Direction, Policy, Rules};
use guardrails::{Engine, EntityType};

use super::raw::{RawGuardrails, RawPolicy};
use super::Problems;

/// The name of the built-in policy, used when the config names no other.
pub const BUILTIN_POLICY: &str = "default";

#[derive(Debug, Clone)]
pub struct GuardrailsConfig {
    pub engine: Arc<Engine>,
    pub policies: BTreeMap<String, Arc<Policy>>,
    pub default_policy: Arc<Policy>,
    /// Bytes of a streamed answer held back until they are known to be safe (raised to the
    /// longest value a rule can match).
    pub stream_holdback: usize,
    /// Non-streamed answers are read whole before being checked; larger ones are refused.
    pub max_response_bytes: usize,
}

impl GuardrailsConfig {
    /// The policy a caller's key or tenant names, or the default one.
    pub fn policy(&self, name: Option<&str>) -> Option<&Arc<Policy>> {
        match name {
            Some(name) => self.policies.get(name),
            None => Some(&self.default_policy),
        }
    }

    /// Whether `name` is a policy of this config (for the CLI before it stores a name).
    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    pub fn policy_names(&self) -> Vec<&str> {
        self.policies.keys().map(String::as_str).collect()
    }
}

pub(super) fn validate(
    raw: &RawGuardrails,
    config_dir: &Path,
    p: &mut Problems,
) -> Option<GuardrailsConfig> {
    let engine = build_engine(raw, config_dir, p);

    let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
    policies.insert(
        BUILTIN_POLICY.to_string(),
        Arc::new(Policy::builtin_default()),
    );
    for (name, raw_policy) in &raw.policies {
        let key = format!("guardrails.policies.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            p.push(&key, "policy names use letters, digits, '-', '_' or '.'");
        }
        policies.insert(name.clone(), Arc::new(policy(name, raw_policy, &key, p)));
    }
    let default_policy = match policies.get(&raw.default_policy) {
        Some(policy) => policy.clone(),
        None => {
            p.push(
                "guardrails.default_policy",
                format!(
                    "{:?} is not a policy; defined: {}",
                    raw.default_policy,
                    policies.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            Arc::new(Policy::builtin_default())
        }
    };
    let stream_holdback = p.positive(
        "guardrails.stream_holdback_bytes",
        raw.stream_holdback_bytes,
    ) as usize;
    let max_response_bytes =
        p.positive("guardrails.max_response_bytes", raw.max_response_bytes) as usize;
    Some(GuardrailsConfig {
        engine: Arc::new(engine?),
        policies,
        default_policy,
        stream_holdback,
        max_response_bytes,
    })
}

fn build_engine(raw: &RawGuardrails, config_dir: &Path, p: &mut Problems) -> Option<Engine> {
    let mut packs = match guardrails::rules::builtin_packs() {
        Ok(packs) => packs,
        Err(e) => {
            p.push(
                "guardrails",
                format!("the built-in rule packs are invalid: {e}"),
            );
            return None;
        }
    };
    let mut ok = true;
    for (i, file) in raw.rule_packs.iter().enumerate() {
        let key = format!("guardrails.rule_packs[{i}]");
        // Relative paths are relative to the config file.
        let path = config_dir.join(file);
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                guardrails::rules::RulePack::parse(&path.display().to_string(), &text)
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok(pack) => packs.push(pack),
            Err(message) => {
                p.push(key, message);
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let engine = match Engine::from_packs(packs) {
        Ok(engine) => engine,
        Err(e) => {
            p.push("guardrails.rule_packs", e.to_string());
            return None;
        }
    };
    let Some(file) = &raw.advice_pack else {
        return Some(engine);
    };
    let path = config_dir.join(file);
    let advice = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|text| {
            guardrails::advice::AdviceClassifier::from_toml(&path.display().to_string(), &text)
                .map_err(|e| e.to_string())
        });
    match advice {
        Ok(advice) => Some(engine.with_advice(advice)),
        Err(message) => {
            p.push("guardrails.advice_pack", message);
            None
        }
    }
}

fn policy(name: &str, raw: &RawPolicy, key: &str, p: &mut Problems) -> Policy {
    Policy {
        name: name.to_string(),
        request: rules(
            &raw.request,
            Direction::Request,
            &format!("{key}.request"),
            p,
        ),
        response: rules(
            &raw.response,
            Direction::Response,
            &format!("{key}.response"),
            p,
        ),
    }
}

/// `default` applies to every entity type not listed; FINANCIAL_ADVICE is only ever set by name.
fn rules(
    raw: &BTreeMap<String, String>,
    direction: Direction,
    key: &str,
    p: &mut Problems,
) -> Rules {
    let mut rules = match raw.get("default") {
        Some(value) => Rules::all(
            action(value, direction, &format!("{key}.default"), p).unwrap_or(Action::Off),
            Action::Off,
        ),
        None => Rules::off(),
    };
    for (type_key, value) in raw {
        if type_key == "default" {
            continue;
        }
        let item_key = format!("{key}.{type_key}");
        if type_key.eq_ignore_ascii_case("FINANCIAL_ADVICE") {
            match action(value, direction, &item_key, p) {
                Some(a @ (Action::Off | Action::Log | Action::Block)) => rules.financial_advice = a,
                Some(_) => p.push(
                    item_key,
                    "FINANCIAL_ADVICE labels a whole text: use off, log or block",
                ),
                None => {}
            }
            continue;
        }
        match type_key.parse::<EntityType>() {
            Ok(entity) => {
                if let Some(a) = action(value, direction, &item_key, p) {
                    rules.set(entity, a);
                }
            }
            Err(e) => p.push(item_key, format!("{e}, default, FINANCIAL_ADVICE")),
        }
    }
    rules
}

fn action(value: &str, direction: Direction, key: &str, p: &mut Problems) -> Option<Action> {
    let action = match value.parse::<Action>() {
        Ok(a) => a,
        Err(message) => {
            p.push(key, message);
            return None;
        }
    };
    if action == Action::Pseudonymize && direction == Direction::Response {
        p.push(
            key,
            "pseudonymize applies to requests only (answers get the caller's values back); use redact",
        );
        return None;
    }
    Some(action)
}
