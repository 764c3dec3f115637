//! `kind = "mock"`: a built-in, deterministic DEMO provider. It answers locally — no network,
//! no secret — so the quickstart works offline and the gateway can be tried end to end. The
//! same request always gets the same text; token counts are a rough `chars / 4` estimate.

use bytes::Bytes;
use serde_json::{json, Value};

use super::Endpoint;

#[derive(Debug, Clone, Copy, Default)]
pub struct MockProvider;

/// A complete answer from the mock: for SSE, one entry per event, written one by one.
#[derive(Debug)]
pub struct MockResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub chunks: Vec<Bytes>,
}

const EMBEDDING_DIMENSIONS: usize = 16;

impl MockProvider {
    pub fn respond(&self, endpoint: Endpoint, body: &Value, model: &str, id: &str) -> MockResponse {
        let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
        let created = unix_seconds();
        let result = match endpoint {
            Endpoint::ChatCompletions => chat(body, model, id, created, stream),
            Endpoint::Completions => completion(body, model, id, created, stream),
            Endpoint::Embeddings => embeddings(body, model),
            Endpoint::Responses => responses(body, model, id, created, stream),
        };
        match result {
            Ok(resp) => resp,
            Err(message) => json_response(
                400,
                json!({"error": {"message": message, "type": "invalid_request_error",
                                 "param": null, "code": "invalid_request"}}),
            ),
        }
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: u16, value: Value) -> MockResponse {
    MockResponse {
        status,
        content_type: "application/json",
        chunks: vec![Bytes::from(value.to_string())],
    }
}

fn sse_response(events: Vec<String>) -> MockResponse {
    MockResponse {
        status: 200,
        content_type: "text/event-stream",
        chunks: events.into_iter().map(Bytes::from).collect(),
    }
}

fn data_event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// All prompt text in a content value: a string, or an array of `{type:"text", text}` parts.
fn content_text(content: &Value, out: &mut String) {
    match content {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(parts) => {
            for part in parts {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                    out.push('\n');
                } else if let Some(c) = part.get("content") {
                    content_text(c, out);
                } else if part.is_string() {
                    content_text(part, out);
                }
            }
        }
        _ => {}
    }
}

/// The text of a required prompt field (string or array) and how many items it holds.
fn required_text(body: &Value, field: &str) -> Result<(String, usize), String> {
    let value = body
        .get(field)
        .ok_or_else(|| format!("Missing required parameter: '{field}'."))?;
    let mut text = String::new();
    content_text(value, &mut text);
    Ok((text, value.as_array().map_or(1, Vec::len)))
}

fn reply_text(kind: &str, items: usize, last: &str) -> String {
    let words = last.split_whitespace().count();
    format!(
        "Hello from the Portcullis demo provider. This is a deterministic mock {kind}, not a \
         model: it received {items} item(s) and the last one had {words} word(s)."
    )
}

/// Splits the reply into word-sized deltas, like a model streaming tokens.
fn deltas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        });
    }
    out
}

fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

fn chat(
    body: &Value,
    model: &str,
    id: &str,
    created: u64,
    stream: bool,
) -> Result<MockResponse, String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("Missing required parameter: 'messages'.")?;
    let mut prompt = String::new();
    let mut last = String::new();
    for m in messages {
        last.clear();
        if let Some(c) = m.get("content") {
            content_text(c, &mut last);
        }
        prompt.push_str(&last);
    }
    let text = reply_text("chat completion", messages.len(), &last);
    let usage = usage_json(estimate_tokens(&prompt), estimate_tokens(&text));
    let id = format!("chatcmpl-{id}");
    if !stream {
        return Ok(json_response(
            200,
            json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                                "logprobs": null, "finish_reason": "stop"}],
                   "usage": usage, "system_fingerprint": "portcullis-mock"}),
        ));
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "system_fingerprint": "portcullis-mock",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events = vec![data_event(&chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ))];
    for d in deltas(&text) {
        events.push(data_event(&chunk(json!({"content": d}), Value::Null)));
    }
    events.push(data_event(&chunk(json!({}), json!("stop"))));
    if include_usage(body) {
        events.push(data_event(
            &json!({"id": id, "object": "chat.completion.chunk",
            "created": created, "model": model, "choices": [], "usage": usage}),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    Ok(sse_response(events))
}

fn completion(
    body: &Value,
    model: &str,
    id: &str,
    created: u64,
    stream: bool,
) -> Result<MockResponse, String> {
    let (prompt, items) = required_text(body, "prompt")?;
    let text = reply_text("completion", items, &prompt);
    let usage = usage_json(estimate_tokens(&prompt), estimate_tokens(&text));
    let id = format!("cmpl-{id}");
    if !stream {
        return Ok(json_response(
            200,
            json!({"id": id, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
                   "usage": usage}),
        ));
    }
    let chunk = |t: &str, finish: Value| {
        json!({"id": id, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": 0, "text": t, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events: Vec<String> = deltas(&text)
        .iter()
        .map(|d| data_event(&chunk(d, Value::Null)))
        .collect();
    events.push(data_event(&chunk("", json!("stop"))));
    if include_usage(body) {
        events.push(data_event(&json!({"id": id, "object": "text_completion",
            "created": created, "model": model, "choices": [], "usage": usage})));
    }
    events.push("data: [DONE]\n\n".to_string());
    Ok(sse_response(events))
}

fn embeddings(body: &Value, model: &str) -> Result<MockResponse, String> {
    let input = body
        .get("input")
        .ok_or("Missing required parameter: 'input'.")?;
    let inputs: Vec<String> = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|v| v.to_string()).collect(),
        _ => return Err("'input' must be a string or an array.".into()),
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(EMBEDDING_DIMENSIONS, |d| d.clamp(1, 4096) as usize);
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += estimate_tokens(text);
            json!({"object": "embedding", "index": i, "embedding": unit_vector(text, dims)})
        })
        .collect();
    Ok(json_response(
        200,
        json!({"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    ))
}

/// A deterministic unit vector derived from the text (FNV-1a seeded xorshift).
fn unit_vector(text: &str, dims: usize) -> Vec<f64> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut v: Vec<f64> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn responses(
    body: &Value,
    model: &str,
    id: &str,
    created: u64,
    stream: bool,
) -> Result<MockResponse, String> {
    let (prompt, items) = required_text(body, "input")?;
    let text = reply_text("response", items, &prompt);
    let (input_tokens, output_tokens) = (estimate_tokens(&prompt), estimate_tokens(&text));
    let usage = json!({"input_tokens": input_tokens, "output_tokens": output_tokens,
                       "total_tokens": input_tokens + output_tokens});
    let resp_id = format!("resp_{id}");
    let msg_id = format!("msg_{id}");
    let message = |content_text: &str, status: &str| {
        json!({"type": "message", "id": msg_id, "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": content_text, "annotations": []}]})
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": resp_id, "object": "response", "created_at": created, "status": status,
               "model": model, "output": output, "usage": usage})
    };
    if !stream {
        return Ok(json_response(
            200,
            response("completed", json!([message(&text, "completed")]), usage),
        ));
    }
    let event = |name: &str, seq: usize, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut events = vec![event(
        "response.created",
        0,
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    )];
    for d in deltas(&text) {
        events.push(event(
            "response.output_text.delta",
            events.len(),
            json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "delta": d}),
        ));
    }
    events.push(event(
        "response.output_text.done",
        events.len(),
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "text": text}),
    ));
    events.push(event(
        "response.completed",
        events.len(),
        json!({"response": response("completed", json!([message(&text, "completed")]), usage)}),
    ));
    Ok(sse_response(events))
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Value {
        v
    }

    #[test]
    fn chat_is_deterministic_with_usage() {
        let b = body(json!({"model": "m", "messages": [{"role": "user", "content": "hi there"}]}));
        let a = MockProvider.respond(Endpoint::ChatCompletions, &b, "m", "1");
        let c = MockProvider.respond(Endpoint::ChatCompletions, &b, "m", "1");
        let va: Value = serde_json::from_slice(&a.chunks[0]).unwrap();
        let vc: Value = serde_json::from_slice(&c.chunks[0]).unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(va["choices"][0]["message"], vc["choices"][0]["message"]);
        assert!(va["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("2 word(s)"));
        assert!(va["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }

    #[test]
    fn chat_stream_is_sse_with_done_and_optional_usage() {
        let b = body(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                            "messages": [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}]}),
        );
        let r = MockProvider.respond(Endpoint::ChatCompletions, &b, "m", "1");
        assert_eq!(r.content_type, "text/event-stream");
        assert!(r.chunks.len() > 5);
        assert_eq!(r.chunks.last().unwrap(), &Bytes::from("data: [DONE]\n\n"));
        let usage_event = &r.chunks[r.chunks.len() - 2];
        assert!(std::str::from_utf8(usage_event)
            .unwrap()
            .contains("\"usage\""));
        let text: String = r.chunks[1..r.chunks.len() - 3]
            .iter()
            .map(|c| {
                let v: Value = serde_json::from_str(
                    std::str::from_utf8(c).unwrap().trim_start_matches("data: "),
                )
                .unwrap();
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(text.starts_with("Hello from the Portcullis demo provider."));
    }

    #[test]
    fn missing_messages_is_an_openai_shaped_400() {
        let r = MockProvider.respond(Endpoint::ChatCompletions, &json!({"model": "m"}), "m", "1");
        assert_eq!(r.status, 400);
        let v: Value = serde_json::from_slice(&r.chunks[0]).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn embeddings_are_unit_vectors_per_input() {
        let r = MockProvider.respond(
            Endpoint::Embeddings,
            &json!({"model": "e", "input": ["a", "b"]}),
            "e",
            "1",
        );
        let v: Value = serde_json::from_slice(&r.chunks[0]).unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        let e0: Vec<f64> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
        let norm: f64 = e0.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-9);
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    }

    #[test]
    fn responses_stream_ends_with_completed() {
        let r = MockProvider.respond(
            Endpoint::Responses,
            &json!({"model": "m", "input": "hi", "stream": true}),
            "m",
            "1",
        );
        let last = std::str::from_utf8(r.chunks.last().unwrap()).unwrap();
        assert!(last.starts_with("event: response.completed"));
    }
}
