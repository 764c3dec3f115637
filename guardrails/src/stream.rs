//! Guarding text that arrives in pieces (a streamed answer) without holding back the whole.
//!
//! The scanner keeps the last `holdback` bytes un-released. Before releasing anything it scans
//! what it holds, together with a tail of already released text (the context a rule looks
//! behind a value, such as "account number"). It releases up to `len - holdback` bytes, moved
//! back to the start of any value that straddles that point, with every value inside the
//! released part already masked. Because the hold-back is at least the longest value any rule
//! can match, no byte of a value leaves before the whole value has been seen and checked.
//! Text up to the last line break is released at once: no value spans lines.

use crate::policy::{apply, Action, Guard};

/// What a push or the final flush lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// Checked text, possibly empty, ready for the client.
    Text(String),
    /// A `block` action fired: the caller ends the stream with an error. Nothing more is
    /// released after this.
    Blocked,
}

/// The scanner for one stream of text (one choice's content, say).
#[derive(Debug)]
pub struct StreamScanner {
    holdback: usize,
    /// Received, not yet released.
    pending: String,
    /// The end of what was released, kept as look-behind context for the rules.
    tail: String,
    /// Everything seen so far, for the text-level FINANCIAL_ADVICE check (only kept when
    /// that check is on).
    seen: String,
    advice_checked_len: usize,
    blocked: bool,
}

/// What plain prose holds back (see `plain_prose_cut`): longer than any word that could start
/// a value before its telltale arrives, and than any confidentiality phrase.
const PROSE_HOLDBACK: usize = 48;

/// How far before a cut `plain_prose_cut` looks for telltales: the longest digit-bearing value.
const LOOK_BEHIND: usize = 64;

/// Held text is scanned and released in steps of at least this many bytes (or at a line end).
const MIN_RELEASE: usize = 16;

/// Text is re-checked for financial advice after this many new bytes while streaming.
const ADVICE_CHECK_EVERY: usize = 256;

/// At most this much of a long answer is kept for the advice check (its end).
const ADVICE_WINDOW: usize = 64 * 1024;

impl StreamScanner {
    /// `holdback` is raised to the engine's longest possible value when smaller.
    pub fn new(holdback: usize) -> StreamScanner {
        StreamScanner {
            holdback,
            pending: String::new(),
            tail: String::new(),
            seen: String::new(),
            advice_checked_len: 0,
            blocked: false,
        }
    }

    /// Bytes received and not yet released.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// Adds a piece of the stream; returns what is now safe to release.
    pub fn push(&mut self, piece: &str, guard: &mut Guard<'_>) -> Released {
        if self.blocked {
            return Released::Blocked;
        }
        self.pending.push_str(piece);
        self.release(guard, false)
    }

    /// The stream ended: checks and releases everything still held.
    pub fn finish(&mut self, guard: &mut Guard<'_>) -> Released {
        if self.blocked {
            return Released::Blocked;
        }
        self.release(guard, true)
    }

    fn release(&mut self, guard: &mut Guard<'_>, last: bool) -> Released {
        if self.advice_blocks(guard, last) {
            return self.block();
        }
        let holdback = self
            .holdback
            .max(guard.engine.max_match_len())
            .max(guard.pseudonyms.max_placeholder_len());

        // At most this much can go out now; too little to be worth a scan means wait for more
        // (a scan per 4-byte token would cost more than it saves in latency).
        let releasable = if last {
            self.pending.len()
        } else {
            let by_length =
                floor_char_boundary(&self.pending, self.pending.len().saturating_sub(holdback));
            // No value spans a line break: everything up to the last one is complete.
            let by_line = self.pending.rfind('\n').map_or(0, |i| i + 1);
            by_length.max(by_line).max(self.plain_prose_cut())
        };
        if !last && releasable < MIN_RELEASE && !self.pending[..releasable].ends_with('\n') {
            return Released::Text(String::new());
        }

        // Scan the look-behind tail and the held text together; keep what touches the held text.
        let scan_text = format!("{}{}", self.tail, self.pending);
        let offset = self.tail.len();
        let findings: Vec<_> = if guard.rules.enabled().next().is_some() {
            guard
                .rules
                .keep(guard.engine.scan(&scan_text))
                .into_iter()
                .filter(|f| f.end > offset)
                .map(|mut f| {
                    // A value that began in released text (only possible for values longer
                    // than the hold-back): mask at least what is still held.
                    f.start = f.start.max(offset) - offset;
                    f.end -= offset;
                    f
                })
                .collect()
        } else {
            Vec::new()
        };
        if findings
            .iter()
            .any(|f| guard.rules.action(f.entity) == Action::Block)
        {
            for f in &findings {
                let action = guard.rules.action(f.entity);
                if action == Action::Block {
                    guard.report.record(guard.direction, f.entity, action);
                }
            }
            return self.block();
        }
        let placeholders = guard.pseudonyms.placeholders_in(&self.pending);

        // How far it is safe to release: everything but the hold-back, and never part of a value.
        let mut cut = releasable;
        loop {
            let straddling = findings
                .iter()
                .map(|f| (f.start, f.end))
                .chain(placeholders.iter().copied())
                .find(|(start, end)| *start < cut && cut < *end);
            match straddling {
                Some((start, _)) => cut = start,
                None => break,
            }
        }
        if cut == 0 {
            return Released::Text(String::new());
        }

        let released: Vec<_> = findings.into_iter().filter(|f| f.end <= cut).collect();
        let raw: String = self.pending.drain(..cut).collect();
        let text = apply(
            &raw,
            &released,
            guard.rules,
            guard.direction,
            guard.pseudonyms,
            guard.report,
        )
        .unwrap_or_else(|| raw.clone());
        self.remember(&raw, holdback, guard.rules.financial_advice != Action::Off);
        Released::Text(text)
    }

    /// How far plain prose may go out early, holding back only [`PROSE_HOLDBACK`] bytes.
    ///
    /// Every value the shipped rules detect carries a telltale near any cut through it: a digit
    /// (numbers, dates, keys, addresses), `@` (e-mail), `_ - + / = [` (tokens, placeholders,
    /// PEM lines), or two upper-case letters in a row (BIC, NINO, PAN, IBAN, AKIA…). A value
    /// that straddles the cut lies within 64 bytes of it; the words that could begin one
    /// without a telltale yet (a long e-mail local part, "May" before "17, 1971", a
    /// confidentiality phrase) fit in the held [`PROSE_HOLDBACK`] bytes. So when the 64 bytes
    /// before the cut and everything after it are free of telltales, nothing sensitive can
    /// straddle it. Otherwise the full hold-back applies.
    fn plain_prose_cut(&self) -> usize {
        let pending = &self.pending;
        if pending.len() <= PROSE_HOLDBACK {
            return 0;
        }
        let limit = floor_char_boundary(pending, pending.len() - PROSE_HOLDBACK);
        // Cut after a space, never inside a word.
        let Some(cut) = pending[..limit].rfind(char::is_whitespace).map(|i| i + 1) else {
            return 0;
        };
        let from = floor_char_boundary(pending, cut.saturating_sub(LOOK_BEHIND));
        let mut window = String::new();
        if cut < LOOK_BEHIND {
            let need = LOOK_BEHIND - cut;
            let start = ceil_char_boundary(&self.tail, self.tail.len().saturating_sub(need));
            window.push_str(&self.tail[start..]);
        }
        window.push_str(&pending[from..]);
        if has_telltale(&window) {
            0
        } else {
            cut
        }
    }

    /// Whether the text-level FINANCIAL_ADVICE check blocks the stream now. With `log`, the
    /// check runs once, on the whole answer at the end.
    fn advice_blocks(&mut self, guard: &mut Guard<'_>, last: bool) -> bool {
        let action = guard.rules.financial_advice;
        if action == Action::Off {
            return false;
        }
        let total = self.seen.len() + self.pending.len();
        let due = last
            || (action == Action::Block && total >= self.advice_checked_len + ADVICE_CHECK_EVERY);
        if !due {
            return false;
        }
        self.advice_checked_len = total;
        let text = format!("{}{}", self.seen, self.pending);
        if guard.engine.is_financial_advice(&text) {
            guard.report.record_advice(guard.direction, action);
            return action == Action::Block;
        }
        false
    }

    fn remember(&mut self, released: &str, holdback: usize, keep_seen: bool) {
        self.tail.push_str(released);
        let excess = self.tail.len().saturating_sub(holdback);
        if excess > 0 {
            let at = ceil_char_boundary(&self.tail, excess);
            self.tail.drain(..at);
        }
        if keep_seen {
            self.seen.push_str(released);
            let excess = self.seen.len().saturating_sub(ADVICE_WINDOW);
            if excess > 0 {
                let at = ceil_char_boundary(&self.seen, excess);
                self.seen.drain(..at);
                self.advice_checked_len = self.advice_checked_len.saturating_sub(at);
            }
        }
    }

    fn block(&mut self) -> Released {
        self.blocked = true;
        self.pending.clear();
        Released::Blocked
    }
}

/// Characters that every detectable value has near any cut through it (see `plain_prose_cut`).
fn has_telltale(text: &str) -> bool {
    let mut previous_upper = false;
    for b in text.bytes() {
        if b.is_ascii_digit() || b"@_-+/=[".contains(&b) {
            return true;
        }
        let upper = b.is_ascii_uppercase();
        if upper && previous_upper {
            return true;
        }
        previous_upper = upper;
    }
    false
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Checked, Direction, Pseudonyms, Report, Rules};
    use crate::Engine;

    fn stream(
        engine: &Engine,
        rules: &Rules,
        pseudonyms: &mut Pseudonyms,
        pieces: &[&str],
    ) -> (String, Report) {
        let mut report = Report::default();
        let mut guard = Guard {
            engine,
            rules,
            direction: Direction::Response,
            pseudonyms,
            report: &mut report,
        };
        let mut scanner = StreamScanner::new(64);
        let mut out = String::new();
        for piece in pieces {
            match scanner.push(piece, &mut guard) {
                Released::Text(t) => out.push_str(&t),
                Released::Blocked => return (format!("{out}<BLOCKED>"), report),
            }
        }
        match scanner.finish(&mut guard) {
            Released::Text(t) => out.push_str(&t),
            Released::Blocked => out.push_str("<BLOCKED>"),
        }
        (out, report)
    }

    fn whole(engine: &Engine, rules: &Rules, pseudonyms: &mut Pseudonyms, text: &str) -> String {
        let mut report = Report::default();
        let mut guard = Guard {
            engine,
            rules,
            direction: Direction::Response,
            pseudonyms,
            report: &mut report,
        };
        match guard.check(text) {
            Checked::Unchanged => text.to_string(),
            Checked::Rewritten(t) => t,
            Checked::Blocked => "<BLOCKED>".to_string(),
        }
    }

    const TEXT: &str =
        "Sure — write to jane.doe@example.com, or call +1 (415) 555-0132 before Friday. \
                        Wire it to DE89 3704 0044 0532 0130 00; thanks, ünïcødé 完了.";

    #[test]
    fn every_split_point_gives_the_same_masked_text_as_the_whole() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let expected = whole(&engine, &rules, &mut Pseudonyms::default(), TEXT);
        assert!(
            expected.contains("[EMAIL]") && expected.contains("[IBAN]"),
            "{expected}"
        );
        for cut in (0..=TEXT.len()).filter(|i| TEXT.is_char_boundary(*i)) {
            let (out, _) = stream(
                &engine,
                &rules,
                &mut Pseudonyms::default(),
                &[&TEXT[..cut], &TEXT[cut..]],
            );
            assert_eq!(out, expected, "split at byte {cut}");
        }
    }

    #[test]
    fn token_sized_pieces_never_release_part_of_a_value() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let chars: Vec<String> = TEXT.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        let mut report = Report::default();
        let mut pseudonyms = Pseudonyms::default();
        let mut guard = Guard {
            engine: &engine,
            rules: &rules,
            direction: Direction::Response,
            pseudonyms: &mut pseudonyms,
            report: &mut report,
        };
        let mut scanner = StreamScanner::new(64);
        let mut out = String::new();
        for piece in pieces {
            if let Released::Text(t) = scanner.push(piece, &mut guard) {
                out.push_str(&t);
            }
            // At no moment does released text hold the start of a value.
            assert!(!out.contains("jane"), "{out}");
            assert!(!out.contains("DE89"), "{out}");
            assert!(!out.contains("415"), "{out}");
        }
        if let Released::Text(t) = scanner.finish(&mut guard) {
            out.push_str(&t);
        }
        assert_eq!(
            out,
            whole(&engine, &rules, &mut Pseudonyms::default(), TEXT)
        );
        assert_eq!(
            report.counts.get(&(
                Direction::Response,
                crate::EntityType::Email,
                Action::Redact
            )),
            Some(&1)
        );
    }

    #[test]
    fn held_text_is_released_once_safe() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let mut report = Report::default();
        let mut pseudonyms = Pseudonyms::default();
        let mut guard = Guard {
            engine: &engine,
            rules: &rules,
            direction: Direction::Response,
            pseudonyms: &mut pseudonyms,
            report: &mut report,
        };
        let mut scanner = StreamScanner::new(16);
        let holdback = 16.max(engine.max_match_len());
        let long = "word ".repeat(400);
        let Released::Text(first) = scanner.push(&long, &mut guard) else {
            panic!("blocked")
        };
        assert!(
            first.len() + holdback >= long.len(),
            "released {} of {}",
            first.len(),
            long.len()
        );
        assert!(scanner.held() <= holdback);
    }

    #[test]
    fn placeholders_split_across_pieces_are_restored() {
        let engine = Engine::builtin().unwrap();
        let mut pseudonyms = Pseudonyms::default();
        let placeholder = pseudonyms.placeholder(crate::EntityType::Email, "jane@example.com");
        let text = format!("Hello {placeholder}, your order shipped.");
        for cut in 0..=text.len() {
            let (out, _) = stream(
                &engine,
                &Rules::off(),
                &mut pseudonyms,
                &[&text[..cut], &text[cut..]],
            );
            assert_eq!(
                out, "Hello jane@example.com, your order shipped.",
                "split at {cut}"
            );
        }
    }

    #[test]
    fn block_ends_the_stream_before_the_value() {
        let engine = Engine::builtin().unwrap();
        let mut rules = Rules::off();
        rules.set(crate::EntityType::ApiSecret, Action::Block);
        let text = "Use the key AKIA2E0A8F3B244C9986 to sign in, then rotate it.";
        let (out, report) = stream(
            &engine,
            &rules,
            &mut Pseudonyms::default(),
            &[&text[..20], &text[20..]],
        );
        assert!(out.ends_with("<BLOCKED>"), "{out}");
        assert!(!out.contains("AKIA"), "{out}");
        assert_eq!(
            report.blocked_names(Direction::Response),
            vec!["API_SECRET"]
        );
    }

    #[test]
    fn a_jwt_longer_than_the_holdback_is_held_until_complete() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let payload =
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiYWRtaW4iOnRydWV9".repeat(8);
        let jwt =
            format!("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{payload}.c2lnbmF0dXJlc2lnbmF0dXJl");
        assert!(jwt.len() > 2 * engine.max_match_len());
        let text = format!("Token: {jwt} expires soon.");
        let pieces: Vec<&str> = text
            .as_bytes()
            .chunks(7)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let (out, _) = stream(&engine, &rules, &mut Pseudonyms::default(), &pieces);
        assert_eq!(out, "Token: [API_SECRET] expires soon.");
    }

    #[test]
    fn complete_lines_are_released_at_once() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let mut report = Report::default();
        let mut pseudonyms = Pseudonyms::default();
        let mut guard = Guard {
            engine: &engine,
            rules: &rules,
            direction: Direction::Response,
            pseudonyms: &mut pseudonyms,
            report: &mut report,
        };
        let mut scanner = StreamScanner::new(256);
        assert_eq!(
            scanner.push("Step one.\nStep", &mut guard),
            Released::Text("Step one.\n".to_string())
        );
    }

    #[test]
    fn plain_prose_is_held_back_only_a_little() {
        let engine = Engine::builtin().unwrap();
        let rules = Rules::all(Action::Redact, Action::Off);
        let mut report = Report::default();
        let mut pseudonyms = Pseudonyms::default();
        let mut guard = Guard {
            engine: &engine,
            rules: &rules,
            direction: Direction::Response,
            pseudonyms: &mut pseudonyms,
            report: &mut report,
        };
        let prose = "Thanks for asking. The short answer is that it depends on what you need, \
                     and the longer answer follows below in a few short paragraphs of text. ";
        let mut scanner = StreamScanner::new(256);
        let mut released = 0;
        for piece in prose.as_bytes().chunks(4) {
            if let Released::Text(t) = scanner.push(std::str::from_utf8(piece).unwrap(), &mut guard)
            {
                released += t.len();
            }
        }
        assert!(
            scanner.held() <= PROSE_HOLDBACK + MIN_RELEASE + 8,
            "held {}",
            scanner.held()
        );
        assert_eq!(released + scanner.held(), prose.len());
        // A digit in view falls back to the full hold-back: this text is shorter than 256 bytes.
        let mut scanner = StreamScanner::new(256);
        let text = format!("{prose}Call 555");
        assert!(text.len() < 256);
        assert_eq!(
            scanner.push(&text, &mut guard),
            Released::Text(String::new())
        );
    }
}
