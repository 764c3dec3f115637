//! FINANCIAL_ADVICE: a text-level classifier.
//!
//! Positive means a model *giving*, or a user *requesting*, personalised investment, trading,
//! tax or loan advice. General education, news, refusals, compliance text, code, quoted or
//! fictional advice and translation requests are negative, even though they share the same
//! vocabulary ("should", "buy", "401(k)", tickers, percentages).
//!
//! No single keyword separates the two sides, so the classifier scores the *combination* of cue
//! groups defined in an operator-editable pack (`rules/advice.toml`): a financial object, an
//! advice act (asking for one or giving one), personal framing, and negative framings that
//! explain the vocabulary away. Each group counts once, however many of its cues match, so a
//! long text does not win by repetition. A text is advice when every `required` group matched
//! and the summed weights reach the pack's threshold.
//!
//! Cost: one lower-casing copy of the text, one aho-corasick pass over all phrases and one
//! `RegexSet` pass over the (few) regexes, so it is linear in the text length.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::Regex;
use serde::Deserialize;

use crate::rules::RuleError;

/// The pack file as written by operators (see the comment block in `rules/advice.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    threshold: f32,
    #[serde(default, rename = "group")]
    groups: Vec<GroupFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    weight: f32,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    regexes: Vec<String>,
}

/// A compiled cue group.
#[derive(Debug)]
struct Group {
    name: String,
    weight: f32,
    required: bool,
    regexes: Vec<Regex>,
}

/// What an aho-corasick pattern id stands for.
#[derive(Debug)]
struct PhraseCue {
    group: usize,
    /// The phrase as written in the pack, for explanations.
    text: String,
    /// Whether the character before / after the match must not be a word character.
    left_boundary: bool,
    right_boundary: bool,
    /// The phrase must open a sentence or clause (written with a leading `^`).
    clause_start: bool,
}

/// The FINANCIAL_ADVICE classifier, compiled from a pack. Cheap to share: `Send + Sync`, no
/// interior mutability.
#[derive(Debug)]
pub struct AdviceClassifier {
    pack: String,
    threshold: f32,
    groups: Vec<Group>,
    phrases: Option<AhoCorasick>,
    phrase_cues: Vec<PhraseCue>,
    /// Group indices in the order their regexes run: required groups first (a miss there ends
    /// the evaluation), then positive groups, then negative ones.
    regex_order: Vec<usize>,
}

/// Why a text was or was not classified as advice.
#[derive(Debug, Clone, PartialEq)]
pub struct AdviceVerdict {
    pub is_advice: bool,
    /// Sum of the weights of the matched groups.
    pub score: f32,
    pub threshold: f32,
    /// Matched groups, in pack order, each with the first cue that matched it.
    pub matched: Vec<(String, String)>,
    /// Required groups that did not match (any makes the verdict negative).
    pub missing_required: Vec<String>,
}

impl AdviceClassifier {
    /// The pack shipped with the crate.
    pub fn builtin() -> Result<AdviceClassifier, RuleError> {
        Self::from_toml("advice.toml", include_str!("../rules/advice.toml"))
    }

    /// Compiles a pack; `source_name` only labels errors.
    pub fn from_toml(source_name: &str, toml_text: &str) -> Result<Self, RuleError> {
        let invalid = |message: String| RuleError::Invalid {
            pack: source_name.to_string(),
            message,
        };
        let file: PackFile = toml::from_str(toml_text).map_err(|e| invalid(e.to_string()))?;
        if !file.threshold.is_finite() {
            return Err(invalid("threshold must be a finite number".to_string()));
        }
        if file.groups.is_empty() {
            return Err(invalid("the pack defines no [[group]]".to_string()));
        }

        let mut groups = Vec::with_capacity(file.groups.len());
        let mut phrase_cues = Vec::new();
        let mut patterns = Vec::new();
        for (index, g) in file.groups.into_iter().enumerate() {
            if g.name.trim().is_empty() {
                return Err(invalid(format!("group #{} has an empty name", index + 1)));
            }
            if !g.weight.is_finite() {
                return Err(invalid(format!("group {}: weight must be finite", g.name)));
            }
            if groups.iter().any(|h: &Group| h.name == g.name) {
                return Err(invalid(format!("group {} is defined twice", g.name)));
            }
            if g.phrases.is_empty() && g.regexes.is_empty() {
                return Err(invalid(format!(
                    "group {} has no phrases or regexes",
                    g.name
                )));
            }
            for raw in &g.phrases {
                let phrase = parse_phrase(raw)
                    .ok_or_else(|| invalid(format!("group {}: empty phrase {raw:?}", g.name)))?;
                patterns.push(phrase.pattern);
                phrase_cues.push(PhraseCue {
                    group: index,
                    text: raw.clone(),
                    left_boundary: phrase.left_boundary,
                    right_boundary: phrase.right_boundary,
                    clause_start: phrase.clause_start,
                });
            }
            let mut regexes = Vec::with_capacity(g.regexes.len());
            for source in &g.regexes {
                let re = Regex::new(source)
                    .map_err(|e| invalid(format!("group {}: regex {source:?}: {e}", g.name)))?;
                regexes.push(re);
            }
            groups.push(Group {
                name: g.name,
                weight: g.weight,
                required: g.required,
                regexes,
            });
        }

        let phrases = if patterns.is_empty() {
            None
        } else {
            // Standard match kind: the only one that reports overlapping matches, which we need
            // because "you should" and "should i" may overlap and feed different groups.
            // A full DFA: about 3x faster than the default NFA on this many patterns, for a few MB
            // built once.
            let ac = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&patterns)
                .map_err(|e| invalid(format!("phrase automaton: {e}")))?;
            Some(ac)
        };
        // A stable sort keeps pack order within each class.
        let mut regex_order: Vec<usize> = (0..groups.len())
            .filter(|&i| !groups[i].regexes.is_empty())
            .collect();
        regex_order.sort_by_key(|&i| {
            let g = &groups[i];
            if g.required {
                0
            } else if g.weight > 0.0 {
                1
            } else {
                2
            }
        });

        Ok(AdviceClassifier {
            pack: source_name.to_string(),
            threshold: file.threshold,
            groups,
            phrases,
            phrase_cues,
            regex_order,
        })
    }

    /// The name the pack was loaded under.
    pub fn pack_name(&self) -> &str {
        &self.pack
    }

    pub fn is_advice(&self, text: &str) -> bool {
        let mut state = self.phrase_pass(text);
        self.regex_pass(text, &mut state, true);
        self.decide(&state.matched)
    }

    /// The summed weights of the matched groups (compare with the pack threshold). It does not
    /// include the `required` gate; [`AdviceClassifier::explain`] reports both.
    pub fn score(&self, text: &str) -> f32 {
        let mut state = self.phrase_pass(text);
        self.regex_pass(text, &mut state, false);
        self.sum(&state.matched)
    }

    /// The full reasoning behind a decision, for logs and for tuning the pack.
    pub fn explain(&self, text: &str) -> AdviceVerdict {
        let mut state = self.phrase_pass(text);
        self.regex_pass(text, &mut state, false);
        let mut matched = Vec::new();
        let mut missing_required = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            if state.matched[i] {
                let cue = state.first_cue[i].clone().unwrap_or_default();
                matched.push((g.name.clone(), cue));
            } else if g.required {
                missing_required.push(g.name.clone());
            }
        }
        AdviceVerdict {
            is_advice: self.decide(&state.matched),
            score: self.sum(&state.matched),
            threshold: self.threshold,
            matched,
            missing_required,
        }
    }

    fn sum(&self, matched: &[bool]) -> f32 {
        self.groups
            .iter()
            .zip(matched)
            .filter(|(_, m)| **m)
            .map(|(g, _)| g.weight)
            .sum()
    }

    fn decide(&self, matched: &[bool]) -> bool {
        let gates_open = self
            .groups
            .iter()
            .zip(matched)
            .all(|(g, m)| !g.required || *m);
        gates_open && self.sum(matched) >= self.threshold
    }

    /// One aho-corasick pass: which groups a phrase matched, and the first such phrase.
    fn phrase_pass(&self, text: &str) -> MatchState {
        let mut state = MatchState {
            matched: vec![false; self.groups.len()],
            first_cue: vec![None; self.groups.len()],
        };
        let Some(ac) = &self.phrases else {
            return state;
        };
        // Phrases are stored lower-case; lower-casing the text once is cheaper than a Unicode
        // case-insensitive automaton, and the boundary checks look at the same copy.
        let lower = text.to_lowercase();
        for m in ac.find_overlapping_iter(&lower) {
            let Some(cue) = self.phrase_cues.get(m.pattern().as_usize()) else {
                continue;
            };
            if state.matched[cue.group] {
                continue;
            }
            let before = &lower[..m.start()];
            if cue.left_boundary && before.chars().next_back().is_some_and(is_word) {
                continue;
            }
            if cue.right_boundary && lower[m.end()..].chars().next().is_some_and(is_word) {
                continue;
            }
            if cue.clause_start && !opens_clause(before) {
                continue;
            }
            state.matched[cue.group] = true;
            state.first_cue[cue.group] = Some(cue.text.clone());
        }
        state
    }

    /// Runs the regexes of groups not yet matched. With `prune`, stops as soon as the
    /// remaining regexes cannot change the decision: most texts never reach the costlier ones.
    fn regex_pass(&self, text: &str, state: &mut MatchState, prune: bool) {
        for (pos, &gi) in self.regex_order.iter().enumerate() {
            if prune && self.decided(state, &self.regex_order[pos..]) {
                return;
            }
            let group = &self.groups[gi];
            if state.matched[gi] {
                continue;
            }
            if let Some(re) = group.regexes.iter().find(|re| re.is_match(text)) {
                state.matched[gi] = true;
                state.first_cue[gi] = Some(format!("/{}/", re.as_str()));
            }
        }
    }

    /// Whether the verdict is fixed whatever the regexes of the `pending` groups find.
    fn decided(&self, state: &MatchState, pending: &[usize]) -> bool {
        let is_pending = |i: usize| pending.contains(&i) && !state.matched[i];
        let gate_can_open = self
            .groups
            .iter()
            .enumerate()
            .all(|(i, g)| !g.required || state.matched[i] || is_pending(i));
        if !gate_can_open {
            return true;
        }
        let score = self.sum(&state.matched);
        let mut best = score;
        let mut worst = score;
        for (i, g) in self.groups.iter().enumerate() {
            if is_pending(i) {
                if g.weight > 0.0 {
                    best += g.weight;
                } else {
                    worst += g.weight;
                }
            }
        }
        let gate_open = self
            .groups
            .iter()
            .enumerate()
            .all(|(i, g)| !g.required || state.matched[i]);
        best < self.threshold || (gate_open && worst >= self.threshold)
    }
}

/// Per-text matching state: which groups matched and the first cue of each.
struct MatchState {
    matched: Vec<bool>,
    first_cue: Vec<Option<String>>,
}

/// A phrase from the pack, ready for the automaton.
struct ParsedPhrase {
    pattern: String,
    left_boundary: bool,
    right_boundary: bool,
    clause_start: bool,
}

/// Lower-cases a phrase and reads its markers: a leading or trailing `*` turns off the
/// word-boundary check on that side ("invest*" matches "investing"); a leading `^` asks for the
/// start of a clause. Boundaries only apply where the phrase edge is a letter or digit of a
/// space-separated script; in CJK text words are not separated, so a boundary check there
/// would reject every real match.
fn parse_phrase(raw: &str) -> Option<ParsedPhrase> {
    let mut s = raw.trim();
    let mut left = true;
    let mut right = true;
    let mut clause_start = false;
    if let Some(rest) = s.strip_prefix('^') {
        s = rest;
        clause_start = true;
    }
    if let Some(rest) = s.strip_prefix('*') {
        s = rest;
        left = false;
    }
    if let Some(rest) = s.strip_suffix('*') {
        s = rest;
        right = false;
    }
    let lower = s.to_lowercase();
    let first = lower.chars().next()?;
    let last = lower.chars().next_back()?;
    Some(ParsedPhrase {
        left_boundary: left && needs_boundary(first),
        right_boundary: right && needs_boundary(last),
        pattern: lower,
        clause_start,
    })
}

/// Whether text ending in `before` leaves the next word at the start of a sentence or clause.
/// Commas do not count: "stocks, short-term bonds" is a list, not an order.
fn opens_clause(before: &str) -> bool {
    match before.trim_end().chars().next_back() {
        None => true,
        Some(c) => matches!(
            c,
            '.' | '!'
                | '?'
                | ';'
                | ':'
                | '\n'
                | '—'
                | '–'
                | '-'
                | '('
                | '"'
                | '“'
                | '«'
                | '¡'
                | '¿'
        ),
    }
}

fn needs_boundary(c: char) -> bool {
    // ASCII plus Latin-1 / Latin Extended letters: the scripts of en, de, fr, es, pt, Hinglish.
    c.is_alphanumeric() && (c as u32) < 0x0250
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advice(text: &str) -> bool {
        AdviceClassifier::builtin().unwrap().is_advice(text)
    }

    #[test]
    fn personalised_advice_given_or_requested_is_advice() {
        for text in [
            "Given your age and your savings, you should move 40% of your 401(k) into a bond index fund.",
            "Should I sell my NVDA shares before the earnings call next week?",
            "I have $20k in savings. Would you recommend I pay off my car loan early or invest it in an S&P 500 ETF?",
            "With your income you'd be better off taking the 15-year fixed mortgage instead of the 30-year one.",
        ] {
            assert!(advice(text), "{text}\n{:?}", AdviceClassifier::builtin().unwrap().explain(text));
        }
    }

    #[test]
    fn education_news_refusals_code_fiction_and_translation_are_not() {
        for text in [
            "A 401(k) is an employer-sponsored retirement plan; contributions are made before tax.",
            "Shares of Tesla fell 4% on Tuesday after the company reported weaker deliveries, analysts said.",
            "I can't provide personalised investment advice. Please consult a licensed financial adviser.",
            "def amortization(principal, rate, years):\n    return principal * rate / (1 - (1 + rate) ** -years)",
            "In the novel, the broker tells Jake: 'you should put everything into gold before the crash.'",
            "Translate into French: 'You should sell your bonds now.'",
            "Please reset my online banking password, I am locked out of my account.",
        ] {
            assert!(!advice(text), "{text}\n{:?}", AdviceClassifier::builtin().unwrap().explain(text));
        }
    }

    #[test]
    fn packs_are_checked() {
        let err = AdviceClassifier::from_toml("mine.toml", "threshold = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mine.toml") && err.contains("group"), "{err}");
        let err = AdviceClassifier::from_toml(
            "mine.toml",
            "threshold = 1.0\n[[group]]\nname = \"g\"\nweight = 1.0\nregexes = [\"(\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mine.toml"), "{err}");
    }
}
