//! What happens to a finding: the action per entity type and direction, and the rewrite of the
//! text that carries out `redact` and `pseudonymize` (and undoes pseudonyms in the answer).
//!
//! A policy never sees values it does not need: a [`Report`] keeps types, actions and counts
//! only, so it can go to metrics and the audit trail as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::engine::{Engine, Finding};
use crate::entity::EntityType;

/// What to do with a detected value. Ordered by severity: when one value is seen by several
/// rules, the strictest action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Not scanned for.
    Off,
    /// Allowed through; the finding is counted and recorded.
    Log,
    /// Replaced by its type in brackets: `[EMAIL]`.
    Redact,
    /// Replaced by a numbered placeholder (`[EMAIL_1]`) that is turned back into the value in
    /// the answer to the same caller. Requests only.
    Pseudonymize,
    /// The request is refused, or the answer replaced by an error.
    Block,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Redact => "redact",
            Action::Pseudonymize => "pseudonymize",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Action::Off),
            "log" => Ok(Action::Log),
            "redact" => Ok(Action::Redact),
            "pseudonymize" => Ok(Action::Pseudonymize),
            "block" => Ok(Action::Block),
            other => Err(format!(
                "unknown action {other:?}; expected one of off, log, redact, pseudonymize, block"
            )),
        }
    }
}

/// Whether text goes to the provider or comes back from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// The actions for one direction: one per entity type, plus the FINANCIAL_ADVICE label
/// (`off`, `log` or `block`: a whole text cannot be redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    actions: BTreeMap<EntityType, Action>,
    pub financial_advice: Action,
}

impl Rules {
    /// Every type `off`.
    pub fn off() -> Rules {
        Rules {
            actions: BTreeMap::new(),
            financial_advice: Action::Off,
        }
    }

    /// Every entity type gets `action`; FINANCIAL_ADVICE gets `advice`.
    pub fn all(action: Action, advice: Action) -> Rules {
        Rules {
            actions: EntityType::ALL.iter().map(|t| (*t, action)).collect(),
            financial_advice: advice,
        }
    }

    pub fn set(&mut self, entity: EntityType, action: Action) {
        self.actions.insert(entity, action);
    }

    pub fn action(&self, entity: EntityType) -> Action {
        self.actions.get(&entity).copied().unwrap_or(Action::Off)
    }

    /// Types scanned for in this direction.
    pub fn enabled(&self) -> impl Iterator<Item = EntityType> + '_ {
        self.actions
            .iter()
            .filter(|(_, a)| **a != Action::Off)
            .map(|(t, _)| *t)
    }

    /// Whether anything is scanned for at all: when not, the text is not even looked at.
    pub fn is_active(&self) -> bool {
        self.financial_advice != Action::Off || self.enabled().next().is_some()
    }

    /// Only findings this direction acts on.
    pub fn keep(&self, findings: Vec<Finding>) -> Vec<Finding> {
        let mut findings = findings;
        findings.retain(|f| self.action(f.entity) != Action::Off);
        findings
    }
}

/// A named policy: what to do on the way in and on the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub request: Rules,
    pub response: Rules,
}

impl Policy {
    /// The policy that applies when the config has no `[guardrails]` section: redact every
    /// entity type (CONFIDENTIAL included) both ways, and record financial advice.
    pub fn builtin_default() -> Policy {
        Policy {
            name: "default".to_string(),
            request: Rules::all(Action::Redact, Action::Log),
            response: Rules::all(Action::Redact, Action::Log),
        }
    }

    pub fn rules(&self, direction: Direction) -> &Rules {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }
}

/// What the guardrails did to one request, in both directions: types, actions and counts —
/// never values. Feeds the metrics and the audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub counts: BTreeMap<(Direction, EntityType, Action), u32>,
    /// Types whose `block` action fired, by direction.
    pub blocked: BTreeSet<(Direction, EntityType)>,
    /// FINANCIAL_ADVICE seen, by direction, with the action taken.
    pub financial_advice: BTreeMap<Direction, Action>,
}

impl Report {
    pub fn record(&mut self, direction: Direction, entity: EntityType, action: Action) {
        *self.counts.entry((direction, entity, action)).or_insert(0) += 1;
        if action == Action::Block {
            self.blocked.insert((direction, entity));
        }
    }

    pub fn record_advice(&mut self, direction: Direction, action: Action) {
        self.financial_advice.insert(direction, action);
    }

    /// Canonical names of what was blocked in `direction`, for the error message.
    pub fn blocked_names(&self, direction: Direction) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .blocked
            .iter()
            .filter(|(d, _)| *d == direction)
            .map(|(_, t)| t.name())
            .collect();
        if self.financial_advice.get(&direction) == Some(&Action::Block) {
            names.push("FINANCIAL_ADVICE");
        }
        names
    }

    pub fn is_blocked(&self, direction: Direction) -> bool {
        !self.blocked_names(direction).is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.financial_advice.is_empty()
    }
}

/// The pseudonyms of one request: value ↔ `[TYPE_n]`. Lives in the request's memory only and is
/// dropped with it — never written anywhere.
#[derive(Debug, Default)]
pub struct Pseudonyms {
    by_value: HashMap<(EntityType, String), String>,
    by_placeholder: HashMap<String, String>,
    next: HashMap<EntityType, u32>,
}

impl Pseudonyms {
    /// The placeholder for `value`: the same value always gets the same one within a request.
    pub fn placeholder(&mut self, entity: EntityType, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(entity, value.to_string())) {
            return p.clone();
        }
        let n = self.next.entry(entity).or_insert(0);
        *n += 1;
        let placeholder = format!("[{}_{}]", entity.name(), n);
        self.by_value
            .insert((entity, value.to_string()), placeholder.clone());
        self.by_placeholder
            .insert(placeholder.clone(), value.to_string());
        placeholder
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// The value behind a placeholder this request handed out.
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    /// Byte ranges of this request's placeholders in `text`.
    pub fn placeholders_in(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        if self.is_empty() {
            return spans;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(open) = bytes[i..].iter().position(|b| *b == b'[').map(|p| p + i) {
            // Placeholders are short: `[` + a type name + `_` + digits + `]`.
            let close = bytes[open..]
                .iter()
                .take(40)
                .position(|b| *b == b']')
                .map(|p| p + open);
            match close {
                Some(close) if self.by_placeholder.contains_key(&text[open..=close]) => {
                    spans.push((open, close + 1));
                    i = close + 1;
                }
                _ => i = open + 1,
            }
        }
        spans
    }

    /// Length of the longest placeholder handed out: a stream must hold back at least this much
    /// so a placeholder split across chunks is restored whole.
    pub fn max_placeholder_len(&self) -> usize {
        self.by_placeholder
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(0)
    }
}

/// Everything needed to check text in one direction of one request.
pub struct Guard<'a> {
    pub engine: &'a Engine,
    pub rules: &'a Rules,
    pub direction: Direction,
    pub pseudonyms: &'a mut Pseudonyms,
    pub report: &'a mut Report,
}

/// The outcome of checking a whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Unchanged,
    Rewritten(String),
    /// A `block` action fired: the caller refuses the request or replaces the answer. The
    /// report says which types.
    Blocked,
}

impl Guard<'_> {
    /// Scans `text`, applies the actions and reports what it found.
    pub fn check(&mut self, text: &str) -> Checked {
        if self.rules.financial_advice != Action::Off && self.engine.is_financial_advice(text) {
            self.report
                .record_advice(self.direction, self.rules.financial_advice);
        }
        let findings = if self.rules.enabled().next().is_some() {
            self.rules.keep(self.engine.scan(text))
        } else {
            Vec::new()
        };
        let rewritten = apply(
            text,
            &findings,
            self.rules,
            self.direction,
            self.pseudonyms,
            self.report,
        );
        if self.report.is_blocked(self.direction) {
            return Checked::Blocked;
        }
        match rewritten {
            Some(text) => Checked::Rewritten(text),
            None => Checked::Unchanged,
        }
    }
}

/// One change to a text: the bytes `start..end` become `replacement`.
struct Edit {
    start: usize,
    end: usize,
    replacement: String,
}

/// Applies `rules` to `findings` (sorted, non-overlapping, from the same `text`) and, in
/// responses, restores this request's placeholders. Returns the new text, or `None` when
/// nothing changed. Every finding is recorded in `report`; a `block` is recorded there too and
/// left to the caller, who refuses the whole text.
pub fn apply(
    text: &str,
    findings: &[Finding],
    rules: &Rules,
    direction: Direction,
    pseudonyms: &mut Pseudonyms,
    report: &mut Report,
) -> Option<String> {
    let restore = direction == Direction::Response;
    let placeholders = if restore {
        pseudonyms.placeholders_in(text)
    } else {
        Vec::new()
    };
    let mut edits: Vec<Edit> = Vec::new();
    for (start, end) in &placeholders {
        if let Some(original) = pseudonyms.original(&text[*start..*end]) {
            edits.push(Edit {
                start: *start,
                end: *end,
                replacement: original.to_string(),
            });
        }
    }
    for f in findings {
        // A placeholder's text is ours, not the provider's data.
        if placeholders.iter().any(|(s, e)| f.start < *e && *s < f.end) {
            continue;
        }
        let action = rules.action(f.entity);
        if action == Action::Off {
            continue;
        }
        report.record(direction, f.entity, action);
        let replacement = match action {
            Action::Redact => format!("[{}]", f.entity.name()),
            // Pseudonyms only make sense for values the caller sent; config validation
            // refuses them for responses, and this keeps a response value from being kept.
            Action::Pseudonymize if direction == Direction::Response => {
                format!("[{}]", f.entity.name())
            }
            Action::Pseudonymize => pseudonyms.placeholder(f.entity, &text[f.start..f.end]),
            Action::Off | Action::Log | Action::Block => continue,
        };
        edits.push(Edit {
            start: f.start,
            end: f.end,
            replacement,
        });
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for e in edits {
        if e.start < at {
            continue;
        }
        out.push_str(&text[at..e.start]);
        out.push_str(&e.replacement);
        at = e.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(entity: EntityType, text: &str, value: &str) -> Finding {
        let start = text.find(value).unwrap();
        Finding {
            entity,
            start,
            end: start + value.len(),
        }
    }

    #[test]
    fn redact_replaces_values_by_their_type() {
        let text = "mail bob@example.com or call +1 415 555 0100";
        let findings = [
            finding(EntityType::Email, text, "bob@example.com"),
            finding(EntityType::Phone, text, "+1 415 555 0100"),
        ];
        let mut report = Report::default();
        let out = apply(
            text,
            &findings,
            &Rules::all(Action::Redact, Action::Off),
            Direction::Request,
            &mut Pseudonyms::default(),
            &mut report,
        );
        assert_eq!(out.as_deref(), Some("mail [EMAIL] or call [PHONE]"));
        assert_eq!(
            report
                .counts
                .get(&(Direction::Request, EntityType::Email, Action::Redact)),
            Some(&1)
        );
    }

    #[test]
    fn pseudonyms_are_consistent_and_restored_in_the_answer() {
        let text = "a@x.io wrote to b@y.io, then a@x.io again";
        let findings = [
            Finding {
                entity: EntityType::Email,
                start: 0,
                end: 6,
            },
            finding(EntityType::Email, text, "b@y.io"),
            Finding {
                entity: EntityType::Email,
                start: text.rfind("a@x.io").unwrap(),
                end: text.rfind("a@x.io").unwrap() + 6,
            },
        ];
        let mut rules = Rules::off();
        rules.set(EntityType::Email, Action::Pseudonymize);
        let mut pseudonyms = Pseudonyms::default();
        let mut report = Report::default();
        let sent = apply(
            text,
            &findings,
            &rules,
            Direction::Request,
            &mut pseudonyms,
            &mut report,
        )
        .unwrap();
        assert_eq!(sent, "[EMAIL_1] wrote to [EMAIL_2], then [EMAIL_1] again");

        let answer = "Reply to [EMAIL_2] and cc [EMAIL_1]; [EMAIL_3] is not ours.";
        let back = apply(
            answer,
            &[],
            &Rules::off(),
            Direction::Response,
            &mut pseudonyms,
            &mut report,
        )
        .unwrap();
        assert_eq!(
            back,
            "Reply to b@y.io and cc a@x.io; [EMAIL_3] is not ours."
        );
    }

    #[test]
    fn block_and_log_leave_the_text_alone_but_are_reported() {
        let text = "key AKIAIOSFODNN7EXAMPLE";
        let findings = [finding(EntityType::ApiSecret, text, "AKIAIOSFODNN7EXAMPLE")];
        let mut rules = Rules::off();
        rules.set(EntityType::ApiSecret, Action::Block);
        let mut report = Report::default();
        let out = apply(
            text,
            &findings,
            &rules,
            Direction::Request,
            &mut Pseudonyms::default(),
            &mut report,
        );
        assert_eq!(out, None);
        assert!(report.is_blocked(Direction::Request));
        assert_eq!(report.blocked_names(Direction::Request), vec!["API_SECRET"]);
        assert!(!report.is_blocked(Direction::Response));
    }

    #[test]
    fn off_types_are_ignored() {
        let text = "10.0.0.1";
        let findings = [finding(EntityType::IpAddress, text, "10.0.0.1")];
        let mut report = Report::default();
        let out = apply(
            text,
            &findings,
            &Rules::off(),
            Direction::Request,
            &mut Pseudonyms::default(),
            &mut report,
        );
        assert_eq!(out, None);
        assert!(report.is_empty());
    }

    #[test]
    fn actions_parse_and_order_by_severity() {
        assert_eq!("block".parse::<Action>(), Ok(Action::Block));
        assert!("drop"
            .parse::<Action>()
            .unwrap_err()
            .contains("pseudonymize"));
        assert!(Action::Block > Action::Pseudonymize && Action::Redact > Action::Log);
    }
}
