//! `portcullis scan`: the detectors over JSONL, one output line per input line. This is how
//! the detectors are evaluated (`../shared/eval/score.py`), so the output shape is fixed:
//! `{"id": …, "entities": [{"type", "start", "end"}], "financial_advice": bool}` with UTF-8
//! byte offsets, end exclusive.

use std::io::{BufRead, Write};

use guardrails::policy::{Action, Policy};
use guardrails::{Engine, EntityType};
use serde_json::{json, Value};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub lines: usize,
    pub invalid: usize,
}

/// Scans each `{"id", "text"}` line of `input`. A line that is not such an object still gets
/// exactly one output line, `{"id": …, "error": "…"}`, so outputs stay aligned with inputs.
/// Blank lines are not inputs. Reports the types `policy` acts on in either direction.
pub fn scan_jsonl(
    engine: &Engine,
    policy: &Policy,
    input: impl BufRead,
    output: impl Write,
) -> std::io::Result<Summary> {
    let enabled: Vec<EntityType> = EntityType::ALL
        .into_iter()
        .filter(|t| {
            policy.request.action(*t) != Action::Off || policy.response.action(*t) != Action::Off
        })
        .collect();
    let advice = policy.request.financial_advice != Action::Off
        || policy.response.financial_advice != Action::Off;

    let mut out = std::io::BufWriter::new(output);
    let mut summary = Summary::default();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        let record: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                summary.invalid += 1;
                writeln!(
                    out,
                    "{}",
                    json!({"id": null, "error": format!("line {}: not JSON: {e}", summary.lines)})
                )?;
                continue;
            }
        };
        let id = record.get("id").cloned().unwrap_or(Value::Null);
        let Some(text) = record.get("text").and_then(Value::as_str) else {
            summary.invalid += 1;
            writeln!(
                out,
                "{}",
                json!({"id": id, "error": format!("line {}: no string \"text\" field", summary.lines)})
            )?;
            continue;
        };
        let entities: Vec<Value> = engine
            .scan(text)
            .into_iter()
            .filter(|f| enabled.contains(&f.entity))
            .map(|f| json!({"type": f.entity.name(), "start": f.start, "end": f.end}))
            .collect();
        let financial_advice = advice && engine.is_financial_advice(text);
        writeln!(
            out,
            "{}",
            json!({"id": id, "entities": entities, "financial_advice": financial_advice})
        )?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_out_per_line_in_even_when_invalid() {
        let engine = Engine::builtin().unwrap();
        let input =
            "{\"id\":\"a\",\"text\":\"mail me at jo@example.com\"}\n\nnot json\n{\"id\":7}\n";
        let mut out = Vec::new();
        let summary = scan_jsonl(
            &engine,
            &Policy::builtin_default(),
            input.as_bytes(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            summary,
            Summary {
                lines: 3,
                invalid: 2
            }
        );
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["id"], "a");
        assert_eq!(lines[0]["entities"][0]["type"], "EMAIL");
        assert_eq!(lines[0]["entities"][0]["start"], 11);
        assert_eq!(lines[0]["entities"][0]["end"], 25);
        assert_eq!(lines[0]["financial_advice"], false);
        assert!(lines[1]["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(lines[2]["id"], 7);
        assert!(lines[2]["error"].as_str().unwrap().contains("text"));
    }
}
