//! Prompt and answer text for tenants whose logging policy is `redacted`: every value the
//! guardrails engine detects is masked as `[TYPE]` — whatever the tenant's guardrail policy
//! does with it on the wire — before the text leaves the request's memory.

use guardrails::policy::{apply, Action, Direction, Pseudonyms, Report, Rules};
use guardrails::Engine;
use serde_json::Value;

use crate::guard::fields;
use crate::guard::sse::SseFramer;
use crate::providers::Endpoint;

/// Raw text captured for one request, bounded. Redacted in the `logging` phase, after the
/// client has its answer.
#[derive(Debug, Default)]
pub struct Capture {
    pub request: Vec<String>,
    pub response: Vec<u8>,
    /// Raw bytes kept per side: several times what is stored, so that masking (which can
    /// shorten text) still leaves enough.
    limit: usize,
    pub request_truncated: bool,
    pub response_truncated: bool,
}

impl Capture {
    pub fn new(max_content_bytes: usize) -> Capture {
        Capture {
            limit: max_content_bytes.saturating_mul(4),
            ..Capture::default()
        }
    }

    /// The text fields of the request as forwarded (after the guard's own rewrites).
    pub fn request_body(&mut self, endpoint: Endpoint, body: &Value) {
        let mut body = body.clone();
        let mut used = 0;
        let limit = self.limit;
        let texts = &mut self.request;
        let mut truncated = false;
        fields::request_texts(endpoint, &mut body, &mut |text: &mut String| {
            if used >= limit {
                truncated = true;
                return;
            }
            let take = floor_char_boundary(text, limit - used);
            truncated |= take < text.len();
            used += take;
            texts.push(text[..take].to_string());
        });
        self.request_truncated = truncated;
    }

    /// Bytes of the answer as sent to the client.
    pub fn response_bytes(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.response.len());
        if bytes.len() > room {
            self.response_truncated = true;
        }
        self.response
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// `{"request":[…],"response":[…]}` with every detected value masked, each side cut to
/// `max_bytes`.
pub fn redact(engine: &Engine, endpoint: Endpoint, capture: &Capture, max_bytes: usize) -> String {
    let request: Vec<String> = capture.request.iter().map(|t| mask(engine, t)).collect();
    let response: Vec<String> = response_texts(endpoint, &capture.response)
        .iter()
        .map(|t| mask(engine, t))
        .collect();
    let request = fit(request, max_bytes, capture.request_truncated, engine);
    let response = fit(response, max_bytes, capture.response_truncated, engine);
    serde_json::json!({"request": request, "response": response}).to_string()
}

fn mask(engine: &Engine, text: &str) -> String {
    let findings = engine.scan(text);
    let rules = Rules::all(Action::Redact, Action::Off);
    let mut report = Report::default();
    let mut pseudonyms = Pseudonyms::default();
    apply(
        text,
        &findings,
        &rules,
        Direction::Request,
        &mut pseudonyms,
        &mut report,
    )
    .unwrap_or_else(|| text.to_string())
}

/// Cuts texts to `max_bytes` in all. Where the raw capture itself was cut, a value may have
/// been cut in half and escaped detection: the last `max_match_len` bytes go too.
fn fit(texts: Vec<String>, max_bytes: usize, truncated: bool, engine: &Engine) -> Vec<String> {
    let mut out = Vec::with_capacity(texts.len());
    let mut used = 0;
    let count = texts.len();
    for (i, mut text) in texts.into_iter().enumerate() {
        if truncated && i + 1 == count {
            let keep =
                floor_char_boundary(&text, text.len().saturating_sub(engine.max_match_len()));
            text.truncate(keep);
            text.push_str("[…]");
        }
        if used + text.len() > max_bytes {
            let keep = floor_char_boundary(&text, max_bytes - used);
            text.truncate(keep);
            text.push_str("[…]");
            out.push(text);
            break;
        }
        used += text.len();
        out.push(text);
    }
    out
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The texts of an answer as sent: a JSON body, or an SSE stream whose deltas are joined back
/// into whole texts (one per choice, tool call or output item).
fn response_texts(endpoint: Endpoint, bytes: &[u8]) -> Vec<String> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let Ok(mut json) = serde_json::from_slice::<Value>(trimmed) else {
            return vec![String::from_utf8_lossy(bytes).into_owned()];
        };
        let mut texts = Vec::new();
        if json.get("error").is_some() {
            if let Some(m) = json.pointer("/error/message").and_then(Value::as_str) {
                texts.push(m.to_string());
            }
        }
        fields::response_texts(endpoint, &mut json, &mut |t: &mut String| {
            texts.push(t.clone())
        });
        return texts;
    }
    // Streams: keyed so interleaved choices stay apart, in order of first appearance.
    let mut keys: Vec<String> = Vec::new();
    let mut joined: std::collections::HashMap<String, String> = Default::default();
    let mut add = |key: String, piece: &str| {
        if piece.is_empty() {
            return;
        }
        if !joined.contains_key(&key) {
            keys.push(key.clone());
        }
        joined.entry(key).or_default().push_str(piece);
    };
    let mut framer = SseFramer::default();
    let mut events = framer.push(bytes);
    let rest = framer.take_rest();
    for event in events.drain(..) {
        let Some(data) = event.data() else { continue };
        if data.trim() == "[DONE]" {
            continue;
        }
        let Ok(json) = serde_json::from_str::<Value>(&data) else {
            add("text".into(), &data);
            continue;
        };
        stream_pieces(&json, &mut add);
    }
    if !rest.is_empty() {
        add("rest".into(), &String::from_utf8_lossy(&rest));
    }
    keys.into_iter().filter_map(|k| joined.remove(&k)).collect()
}

/// The text pieces of one streamed event: chat and completions chunks, Responses deltas,
/// and error events.
fn stream_pieces(json: &Value, add: &mut dyn FnMut(String, &str)) {
    if let Some(m) = json.pointer("/error/message").and_then(Value::as_str) {
        add("error".into(), m);
    }
    if let Some(choices) = json.get("choices").and_then(Value::as_array) {
        for choice in choices {
            let i = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let holder = choice.get("delta").unwrap_or(choice);
            for field in ["content", "text", "refusal"] {
                if let Some(t) = holder.get(field).and_then(Value::as_str) {
                    add(format!("c{i}"), t);
                }
            }
            for call in holder
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    add(format!("c{i}t{t}"), a);
                }
            }
        }
        return;
    }
    // Responses API: `response.output_text.delta`, `response.function_call_arguments.delta`…
    let kind = json.get("type").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with(".delta") {
        if let Some(d) = json.get("delta").and_then(Value::as_str) {
            let item = json
                .get("output_index")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            add(format!("o{item}"), d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_and_streamed_answer_are_masked() {
        let engine = Engine::builtin().unwrap();
        let mut capture = Capture::new(10_000);
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "mail jane.doe@example.com please"}]});
        capture.request_body(Endpoint::ChatCompletions, &body);
        capture.response_bytes(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"write to jane.d\"}}]}\n\n",
        );
        capture.response_bytes(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"oe@example.com\"}}]}\n\ndata: [DONE]\n\n");
        let out = redact(&engine, Endpoint::ChatCompletions, &capture, 10_000);
        assert!(!out.contains("jane"), "{out}");
        assert!(out.contains("[EMAIL]"), "{out}");
        assert!(out.contains("mail [EMAIL] please"), "{out}");
    }

    #[test]
    fn a_cut_capture_drops_the_tail_that_may_hold_half_a_value() {
        let engine = Engine::builtin().unwrap();
        let mut capture = Capture::new(40);
        let mut text = "x".repeat(150);
        text.push_str(" jane.doe@example.com");
        let body = serde_json::json!({"model": "m", "prompt": text});
        capture.request_body(Endpoint::Completions, &body);
        assert!(capture.request_truncated);
        let out = redact(&engine, Endpoint::Completions, &capture, 40);
        assert!(!out.contains("jane"), "{out}");
    }
}
