// Benchmarks: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Guardrails throughput: `Engine::scan` (+ the advice classifier) over the evaluation sample,
//! over clean prose, and the streaming scanner over an answer arriving in token-sized pieces.
//! Reported as bytes/s by criterion. Run: `cargo bench -p guardrails`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use guardrails::policy::{Action, Direction, Guard, Pseudonyms, Report, Rules};
use guardrails::stream::StreamScanner;
use guardrails::Engine;

/// The texts of `../shared/eval/corpus_dev.jsonl` (relative to the repository root).
fn corpus() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/eval/corpus_dev.jsonl"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the evaluation sample sits beside the checkout)"));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

const PROSE: &str = "The quarterly review covered onboarding, the support backlog and the new \
    release process. Teams agreed to publish notes every Friday, to keep the runbooks short, \
    and to move the retrospective to the first Monday of each month. Nobody raised concerns \
    about the schedule, and the next review will look at the results. ";

fn bench(c: &mut Criterion) {
    let engine = Engine::builtin().unwrap();
    let texts = corpus();
    let bytes: usize = texts.iter().map(String::len).sum();

    let mut group = c.benchmark_group("guardrails");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("scan_corpus", |b| {
        b.iter(|| texts.iter().map(|t| engine.scan(t).len()).sum::<usize>())
    });
    group.bench_function("scan_and_advice_corpus", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| engine.scan(t).len() + usize::from(engine.is_financial_advice(t)))
                .sum::<usize>()
        })
    });
    let prose = PROSE.repeat(64);
    group.throughput(Throughput::Bytes(prose.len() as u64));
    group.bench_function("scan_clean_prose_24k", |b| {
        b.iter(|| engine.scan(&prose).len())
    });

    // A 4 KB answer streamed in 4-byte pieces, redacting everything.
    let answer: String = texts.concat().chars().take(4096).collect();
    let pieces: Vec<String> = answer
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    let rules = Rules::all(Action::Redact, Action::Off);
    group.throughput(Throughput::Bytes(answer.len() as u64));
    group.bench_function("stream_4k_in_4_byte_pieces", |b| {
        b.iter(|| {
            let mut pseudonyms = Pseudonyms::default();
            let mut report = Report::default();
            let mut guard = Guard {
                engine: &engine,
                rules: &rules,
                direction: Direction::Response,
                pseudonyms: &mut pseudonyms,
                report: &mut report,
            };
            let mut scanner = StreamScanner::new(256);
            for p in &pieces {
                let _ = scanner.push(p, &mut guard);
            }
            scanner.finish(&mut guard)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
