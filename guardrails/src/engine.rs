//! The compiled engine: every rule pack turned into automata once, then `scan` per text.
//!
//! A scan is: one pass of a `RegexSet` over the text to learn which rules can match at all
//! (most texts match none, and stop there); for those, the rule's own regex finds the spans;
//! each span must sit on a word boundary, pass its validator, and have (or not have) context
//! words nearby. The context word nearest before a value is its label: another number's label
//! in between (`exclude_nearer`) or, in a table, a label in another column cancels it.
//! Keyword markers come from one aho-corasick pass. Overlapping findings are resolved by
//! priority, then length.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::advice::AdviceClassifier;
use crate::entity::EntityType;
use crate::rules::{builtin_packs, Rule, RuleError, RulePack, DIGIT_RULE_MAX_LEN};

/// The most a stream is held back for a single value, in bytes.
pub const MAX_HOLDBACK: usize = 256;

/// One detected value: its type and its UTF-8 byte range in the scanned text (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    pub entity: EntityType,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
struct CompiledRule {
    rule: Rule,
    regex: Regex,
    context: Option<AhoCorasick>,
    exclude: Option<AhoCorasick>,
    exclude_nearer: Option<AhoCorasick>,
    exclude_value: Option<Regex>,
}

/// Every detector, compiled. Cheap to share (`Arc`), `Send + Sync`, no interior mutability.
#[derive(Debug)]
pub struct Engine {
    /// Every pattern rule, in pack order.
    rules: Vec<CompiledRule>,
    /// All rule patterns at once: one pass over the text says which rules can match at all
    /// (on most texts none can, and the scan stops there).
    set: RegexSet,
    keywords: Option<AhoCorasick>,
    keyword_entities: Vec<EntityType>,
    max_match_len: usize,
    advice: AdviceClassifier,
}

impl Engine {
    /// The engine built from the rule packs embedded in the binary.
    pub fn builtin() -> Result<Engine, RuleError> {
        Engine::from_packs(builtin_packs()?)
    }

    /// Compiles packs in order; a pack whose `name` equals an earlier one replaces it.
    pub fn from_packs(packs: Vec<RulePack>) -> Result<Engine, RuleError> {
        let mut merged: Vec<RulePack> = Vec::new();
        for pack in packs {
            match merged.iter_mut().find(|p| p.name == pack.name) {
                Some(existing) => *existing = pack,
                None => merged.push(pack),
            }
        }
        let invalid = |pack: &str, message: String| RuleError::Invalid {
            pack: pack.to_string(),
            message,
        };
        let mut rules = Vec::new();
        let mut words = Vec::new();
        let mut keyword_entities = Vec::new();
        let mut max_match_len = 0;
        for pack in &merged {
            for rule in &pack.rules {
                let regex = Regex::new(&rule.pattern)
                    .map_err(|e| invalid(&pack.name, format!("rule {}: {e}", rule.id)))?;
                let exclude_value = match &rule.exclude_value {
                    Some(p) => Some(
                        Regex::new(p)
                            .map_err(|e| invalid(&pack.name, format!("rule {}: {e}", rule.id)))?,
                    ),
                    None => None,
                };
                max_match_len = max_match_len.max(rule.max_len);
                rules.push(CompiledRule {
                    context: word_automaton(&rule.context)
                        .map_err(|e| invalid(&pack.name, format!("rule {}: {e}", rule.id)))?,
                    exclude: word_automaton(&rule.exclude_context)
                        .map_err(|e| invalid(&pack.name, format!("rule {}: {e}", rule.id)))?,
                    exclude_nearer: word_automaton(&rule.exclude_nearer)
                        .map_err(|e| invalid(&pack.name, format!("rule {}: {e}", rule.id)))?,
                    exclude_value,
                    regex,
                    rule: rule.clone(),
                });
            }
            for k in &pack.keywords {
                for w in &k.words {
                    max_match_len = max_match_len.max(w.len());
                    words.push(w.clone());
                    keyword_entities.push(k.entity);
                }
            }
        }
        let set = rule_set(&rules)?;
        let keywords = if words.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&words)
                    .map_err(|e| invalid("(keywords)", e.to_string()))?,
            )
        };
        Ok(Engine {
            rules,
            set,
            keywords,
            keyword_entities,
            max_match_len,
            advice: AdviceClassifier::builtin()?,
        })
    }

    /// The same engine with another FINANCIAL_ADVICE classifier (an operator's edited pack).
    pub fn with_advice(self, advice: AdviceClassifier) -> Engine {
        Engine { advice, ..self }
    }

    /// Findings in `text`, sorted by start, never overlapping, spans on char boundaries.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut candidates: Vec<(Finding, i32)> = Vec::new();
        // Rules whose values hold a digit look only around digits (found once, if needed).
        let mut regions: Option<Vec<(usize, usize)>> = None;
        for index in self.set.matches(text).iter() {
            let compiled = &self.rules[index];
            if compiled.rule.needs_digit {
                for &(start, end) in regions.get_or_insert_with(|| digit_regions(text)).iter() {
                    self.run(compiled, text, start, end, &mut candidates);
                }
            } else {
                self.run(compiled, text, 0, text.len(), &mut candidates);
            }
        }
        if let Some(ac) = &self.keywords {
            for m in ac.find_iter(text) {
                if on_word_boundary(text, m.start(), m.end()) {
                    let entity = self.keyword_entities[m.pattern().as_usize()];
                    let finding = Finding {
                        entity,
                        start: m.start(),
                        end: m.end(),
                    };
                    candidates.push((finding, 0));
                }
            }
        }
        resolve(candidates)
    }

    /// Runs one rule over `text[from..to]`, offering each match to [`Engine::consider`].
    fn run(
        &self,
        compiled: &CompiledRule,
        text: &str,
        from: usize,
        to: usize,
        out: &mut Vec<(Finding, i32)>,
    ) {
        let part = &text[from..to];
        if compiled.rule.group == 0 {
            for m in compiled.regex.find_iter(part) {
                self.consider(compiled, text, from + m.start(), from + m.end(), out);
            }
        } else {
            for caps in compiled.regex.captures_iter(part) {
                if let Some(m) = caps.get(compiled.rule.group) {
                    self.consider(compiled, text, from + m.start(), from + m.end(), out);
                }
            }
        }
    }

    fn consider(
        &self,
        compiled: &CompiledRule,
        text: &str,
        start: usize,
        end: usize,
        out: &mut Vec<(Finding, i32)>,
    ) {
        let rule = &compiled.rule;
        if start == end
            || end - start > rule.max_len
            || !on_word_boundary(text, start, end)
            || continues_a_number(text, start, end)
        {
            return;
        }
        let value = &text[start..end];
        if let Some(v) = rule.validator {
            if !v.check(value) {
                return;
            }
        }
        if compiled
            .exclude_value
            .as_ref()
            .is_some_and(|re| re.is_match(value))
        {
            return;
        }
        let before = window_start(text, start, rule.context_before);
        let after = window_end(text, end, rule.context_after);
        let (head, tail) = (&text[before..start], &text[end..after]);
        if let Some(ex) = &compiled.exclude {
            if has_word(ex, head) || has_word(ex, tail) {
                return;
            }
        }
        if rule.context_required {
            let Some(context) = &compiled.context else {
                return;
            };
            // The context word closest before the value is the value's label.
            let label = last_word(context, head);
            if label.is_none() && !has_word(context, tail) {
                return;
            }
            if let Some((label_start, _)) = label {
                if !same_column(text, before + label_start, start) {
                    return;
                }
            }
            let label_end = label.map(|(_, end)| end);
            // Another label between that one and the value means the value belongs to it:
            // in "Konto 1234567890, BLZ 37040044" the second number is a bank code. Only the
            // value's own line counts: in CSV the other column names sit on the header line.
            if let Some(nearer) = &compiled.exclude_nearer {
                let gap = &head[label_end.unwrap_or(0)..];
                let line = gap.rfind('\n').map_or(gap, |i| &gap[i + 1..]);
                if has_word(nearer, line) {
                    return;
                }
            }
        }
        out.push((
            Finding {
                entity: rule.entity,
                start,
                end,
            },
            rule.priority,
        ));
    }

    /// Whether `text` gives or asks for personalised financial advice.
    pub fn is_financial_advice(&self, text: &str) -> bool {
        self.advice.is_advice(text)
    }

    /// The longest value any rule can match, in bytes, capped at [`MAX_HOLDBACK`]: a
    /// streaming hold-back shorter than this could release the first part of a value before
    /// its end has arrived. (Longer values — a JWT with a big payload — are masked from where
    /// they are recognised.)
    pub fn max_match_len(&self) -> usize {
        self.max_match_len.min(MAX_HOLDBACK)
    }
}

/// One `RegexSet` over every rule's pattern. Its lazy DFA gets room to grow: with a few dozen
/// overlapping digit patterns the default cache thrashes and the set falls back to a much
/// slower engine (a third of the speed on digit-heavy text).
fn rule_set(rules: &[CompiledRule]) -> Result<RegexSet, RuleError> {
    RegexSetBuilder::new(rules.iter().map(|r| r.rule.pattern.as_str()))
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|e| RuleError::Invalid {
            pack: "(all packs)".to_string(),
            message: e.to_string(),
        })
}

fn word_automaton(words: &[String]) -> Result<Option<AhoCorasick>, String> {
    if words.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(words)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A value must not be glued to letters or digits on either side (`x4111…`, `…1111y`).
fn on_word_boundary(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !glued(before) && !glued(after)
}

/// The parts of `text` within [`DIGIT_RULE_MAX_LEN`] bytes of a digit, merged, widened to
/// start after whitespace: every value of a `needs_digit` rule lies inside one of them. Prose
/// without digits yields none, so those rules cost nothing there.
fn digit_regions(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut regions: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(d) = bytes[i..].iter().position(u8::is_ascii_digit) {
        let digit = i + d;
        let mut start = digit.saturating_sub(DIGIT_RULE_MAX_LEN);
        // Back to a word start, so no match begins in the middle of a word.
        let floor = start.saturating_sub(16);
        while start > floor && !bytes[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        let start = window_start(text, start, 0);
        let end = window_end(text, digit + 1, DIGIT_RULE_MAX_LEN);
        match regions.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => regions.push((start, end)),
        }
        i = digit + 1;
    }
    regions
}

/// Whether a context word occurs in `window` as a word of its own ("tin" is not in "routing").
fn has_word(ac: &AhoCorasick, window: &str) -> bool {
    ac.find_overlapping_iter(window)
        .any(|m| is_whole_word(window, m.start(), m.end()))
}

/// Where the last context word in `window` starts and ends, if there is one (of context
/// words ending at the same place, the longest: "account number" rather than "number").
fn last_word(ac: &AhoCorasick, window: &str) -> Option<(usize, usize)> {
    ac.find_overlapping_iter(window)
        .filter(|m| is_whole_word(window, m.start(), m.end()))
        .map(|m| (m.start(), m.end()))
        .max_by_key(|&(start, end)| (end, std::cmp::Reverse(start)))
}

/// In a table (CSV, TSV, markdown) the label is a column name on an earlier line, and a value
/// belongs to it only in the same column: in `name,dob,joined` rows the third field is not a
/// birth date. A label on the value's own line, or on a line with no separators, always holds.
fn same_column(text: &str, label_start: usize, value_start: usize) -> bool {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let (header_start, row_start) = (line_start(label_start), line_start(value_start));
    if header_start == row_start {
        return true;
    }
    let header_end = text[label_start..]
        .find('\n')
        .map_or(text.len(), |i| label_start + i);
    let header = &text[header_start..header_end];
    let Some(sep) = [',', '\t', '|', ';']
        .into_iter()
        .filter(|c| header.contains(*c))
        .max_by_key(|c| header.matches(*c).count())
    else {
        return true;
    };
    let column = |from: usize, to: usize| text[from..to].matches(sep).count();
    column(header_start, label_start) == column(row_start, value_start)
}

/// A context word is a word of its own: not glued to letters or digits. Unlike values, `_`
/// separates words here, so `aadhaar_no` and `passport_number` keys carry their context.
fn is_whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !glued(before) && !glued(after)
}

/// A digit value that is only part of a longer number: `0384 9219 4842` inside a tracking
/// number `9400 0384 9219 4842 3951 34`, `6264-4415-8689` inside a UUID.
fn continues_a_number(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    let bytes = text.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let alnum_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_alphanumeric);
    let ends_with_digit = value.bytes().last().is_some_and(|b| b.is_ascii_digit());
    let starts_with_digit = value.bytes().next().is_some_and(|b| b.is_ascii_digit());
    // A `.` then a digit continues a dotted number (an OID `1.3.6.1.4.1…` is no address);
    // a `.` then anything else ends a sentence.
    let joined_after =
        ends_with_digit && matches!(bytes.get(end), Some(b' ' | b'-' | b'.')) && digit_at(end + 1);
    // A digit run right after `+` is a phone number's country code onwards, never a card.
    let joined_before = starts_with_digit
        && start >= 1
        && match bytes[start - 1] {
            b'+' => true,
            b'-' | b'.' => start >= 2 && alnum_at(start - 2),
            b' ' => start >= 2 && digit_at(start - 2),
            _ => false,
        };
    joined_after || joined_before
}

fn window_start(text: &str, start: usize, len: usize) -> usize {
    let mut i = start.saturating_sub(len);
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn window_end(text: &str, end: usize, len: usize) -> usize {
    let mut i = (end + len).min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Keeps the best of overlapping candidates: higher priority, then longer, then earlier.
fn resolve(mut candidates: Vec<(Finding, i32)>) -> Vec<Finding> {
    candidates.sort_by(|(a, pa), (b, pb)| {
        pb.cmp(pa)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(candidates.len());
    for (f, _) in candidates {
        if kept.iter().all(|k| f.end <= k.start || k.end <= f.start) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(text: &str) -> Vec<(EntityType, String)> {
        let engine = Engine::builtin().unwrap();
        engine
            .scan(text)
            .into_iter()
            .map(|f| (f.entity, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn finds_validated_values_and_ignores_look_alikes() {
        let found =
            types("card 4111 1111 1111 1111, not 4111 1111 1111 1112; mail a.b@example.org");
        assert_eq!(
            found,
            vec![
                (EntityType::CreditCard, "4111 1111 1111 1111".to_string()),
                (EntityType::Email, "a.b@example.org".to_string())
            ]
        );
        assert!(types("npm i lodash@4.17.21 and icon@2x.png").is_empty());
    }

    #[test]
    fn context_is_required_where_the_rule_says_so() {
        assert!(types("order 12345678 shipped").is_empty());
        let found = types("account number: 12345678");
        assert_eq!(
            found,
            vec![(EntityType::BankAccount, "12345678".to_string())]
        );
    }

    #[test]
    fn a_pack_with_the_same_name_replaces_the_shipped_one() {
        let mut packs = builtin_packs().unwrap();
        packs.push(
            RulePack::parse(
                "mine.toml",
                "name = \"confidential\"\n[[keywords]]\nid = \"k\"\nentity = \"CONFIDENTIAL\"\nwords = [\"falcon eyes only\"]\n",
            )
            .unwrap(),
        );
        let engine = Engine::from_packs(packs).unwrap();
        let text = "CONFIDENTIAL: project FALCON EYES ONLY";
        let found: Vec<&str> = engine
            .scan(text)
            .iter()
            .map(|f| &text[f.start..f.end])
            .collect();
        assert_eq!(found, vec!["FALCON EYES ONLY"]);
    }
}
