// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The detectors against the labelled sample `../shared/eval/corpus_dev.jsonl`, scored the way
//! `score.py` scores them (same type, the prediction covers at least half of the gold span).
//! The floors sit a little below today's figures so a rule change that costs recall or
//! precision fails here, not in production.

use std::collections::BTreeMap;

use guardrails::Engine;
use serde_json::Value;

struct Sample {
    text: String,
    /// (type, byte start, byte end)
    gold: Vec<(String, usize, usize)>,
    decoys: Vec<(String, usize, usize)>,
}

/// Python code-point offsets → UTF-8 byte offsets.
fn byte_offset(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

fn load() -> Vec<Sample> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/eval/corpus_dev.jsonl"
    );
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    data.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let text = v["text"].as_str().unwrap().to_string();
            let spans = |key: &str, kind: &str| -> Vec<(String, usize, usize)> {
                v[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                let s = byte_offset(&text, e["start"].as_u64().unwrap() as usize);
                                let t = byte_offset(&text, e["end"].as_u64().unwrap() as usize);
                                (e[kind].as_str().unwrap().to_string(), s, t)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            Sample {
                gold: spans("entities", "type"),
                decoys: spans("decoys", "kind"),
                text,
            }
        })
        .collect()
}

fn covers(pred: (usize, usize), gold: (usize, usize)) -> bool {
    let overlap = pred.1.min(gold.1).saturating_sub(pred.0.max(gold.0));
    overlap * 2 >= gold.1 - gold.0
}

#[test]
fn every_type_keeps_its_precision_and_recall() {
    let engine = Engine::builtin().unwrap();
    // type -> (gold, found, predicted, correct)
    let mut counts: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut checksum_decoys_flagged = Vec::new();
    for sample in load() {
        let found = engine.scan(&sample.text);
        for (t, s, e) in &sample.gold {
            let c = counts.entry(t.clone()).or_default();
            c.0 += 1;
            if found
                .iter()
                .any(|f| f.entity.name() == t && covers((f.start, f.end), (*s, *e)))
            {
                c.1 += 1;
            }
        }
        for f in &found {
            let c = counts.entry(f.entity.name().to_string()).or_default();
            c.2 += 1;
            if sample
                .gold
                .iter()
                .any(|(t, s, e)| t == f.entity.name() && covers((f.start, f.end), (*s, *e)))
            {
                c.3 += 1;
            }
        }
        for (kind, s, e) in &sample.decoys {
            let checksum = [
                "IBAN_MOD97_FAIL",
                "LUHN_FAIL_16",
                "NINE_DIGITS_ABA_FAIL",
                "SSN_INVALID_RANGE",
                "AADHAAR_VERHOEFF_FAIL",
                "NINO_INVALID_PREFIX",
                "BTC_BAD_CHECKSUM",
            ];
            if checksum.contains(&kind.as_str())
                && found.iter().any(|f| {
                    f.start < *e
                        && *s < f.end
                        && !sample.gold.iter().any(|g| g.1 < f.end && f.start < g.2)
                })
            {
                checksum_decoys_flagged.push((kind.clone(), sample.text[*s..*e].to_string()));
            }
        }
    }
    assert!(
        checksum_decoys_flagged.is_empty(),
        "values failing their checksum were flagged: {checksum_decoys_flagged:?}"
    );
    let (mut gold, mut found, mut predicted, mut correct) = (0, 0, 0, 0);
    for (t, (g, f, p, c)) in &counts {
        let recall = *f as f64 / (*g).max(1) as f64;
        let precision = *c as f64 / (*p).max(1) as f64;
        assert!(recall >= 0.95, "{t}: recall {recall:.3} ({f}/{g})");
        assert!(precision >= 0.95, "{t}: precision {precision:.3} ({c}/{p})");
        gold += g;
        found += f;
        predicted += p;
        correct += c;
    }
    let recall = found as f64 / gold as f64;
    let precision = correct as f64 / predicted as f64;
    assert!(
        recall >= 0.99 && precision >= 0.99,
        "micro P {precision:.3} R {recall:.3}"
    );
}

#[test]
fn financial_advice_keeps_its_precision_and_recall() {
    let engine = Engine::builtin().unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/eval/corpus_dev.jsonl"
    );
    let data = std::fs::read_to_string(path).unwrap();
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for line in data.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let gold = v["labels"]["financial_advice"].as_bool().unwrap();
        let predicted = engine.is_financial_advice(v["text"].as_str().unwrap());
        match (gold, predicted) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            _ => {}
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    assert!(
        precision >= 0.9 && recall >= 0.9,
        "P {precision:.3} R {recall:.3}"
    );
}

/// Every sample text streamed in small pieces comes out exactly as the whole text does when it
/// is checked at once: no value is released before it is masked, whatever the cut points.
#[test]
fn streaming_every_sample_text_matches_checking_it_whole() {
    use guardrails::policy::{Action, Checked, Direction, Guard, Pseudonyms, Report, Rules};
    use guardrails::stream::{Released, StreamScanner};

    let engine = Engine::builtin().unwrap();
    let rules = Rules::all(Action::Redact, Action::Off);
    let mut mismatches = Vec::new();
    for (i, sample) in load().into_iter().enumerate() {
        let text = sample.text;
        let mut report = Report::default();
        let mut pseudonyms = Pseudonyms::default();
        let mut guard = Guard {
            engine: &engine,
            rules: &rules,
            direction: Direction::Response,
            pseudonyms: &mut pseudonyms,
            report: &mut report,
        };
        let whole = match guard.check(&text) {
            Checked::Unchanged => text.clone(),
            Checked::Rewritten(t) => t,
            Checked::Blocked => unreachable!("no block action"),
        };
        // Pieces of 1 to 7 bytes (on char boundaries), varying per text.
        let step = 1 + i % 7;
        let mut scanner = StreamScanner::new(256);
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            if let Released::Text(t) = scanner.push(&text[at..end], &mut guard) {
                out.push_str(&t);
            }
            at = end;
        }
        if let Released::Text(t) = scanner.finish(&mut guard) {
            out.push_str(&t);
        }
        if out != whole {
            mismatches.push((i, whole, out));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} differ, first: {:?}",
        mismatches.len(),
        mismatches.first()
    );
}
