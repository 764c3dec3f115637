//! Reading what an answer cost: the provider's `usage` (whole answers, the last chunk of a
//! chat or completions stream asked for with `stream_options.include_usage`, or
//! `response.completed` of a Responses stream), and a running count of the completion tokens a
//! stream has produced so far, so a stream can be held to its budget while it runs.

use bpe_openai::Tokenizer;
use serde_json::Value;

use crate::guard::sse::{Event, SseFramer};
use crate::providers::Endpoint;

/// Tokens as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

/// The `usage` object of an answer or chunk, in either the Chat/Completions/Embeddings shape
/// (`prompt_tokens`, `completion_tokens`) or the Responses shape (`input_tokens`,
/// `output_tokens`, under `response` in stream events).
pub fn from_json(value: &Value) -> Option<Usage> {
    let usage = value
        .get("usage")
        .filter(|u| u.is_object())
        .or_else(|| value.pointer("/response/usage").filter(|u| u.is_object()))?;
    let field = |names: [&str; 2]| names.iter().find_map(|n| usage.get(*n)?.as_u64());
    let prompt = field(["prompt_tokens", "input_tokens"]).unwrap_or(0);
    let completion = field(["completion_tokens", "output_tokens"]).unwrap_or(0);
    let total = usage
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(prompt + completion);
    Some(Usage {
        prompt,
        completion,
        total,
    })
}

/// One event of a metered stream, with the completion tokens it carries.
#[derive(Debug)]
pub struct Metered {
    pub raw: Vec<u8>,
    pub tokens: u64,
}

/// Frames an SSE answer (after the guard), takes the provider's usage from it, drops the usage
/// chunk the gateway asked for on the client's behalf, and counts completion tokens.
pub struct StreamMeter {
    endpoint: Endpoint,
    framer: SseFramer,
    /// The client did not ask for `include_usage`: the usage-only chunk is not theirs to see.
    drop_usage_chunk: bool,
    tokenizer: &'static Tokenizer,
    pub usage: Option<Usage>,
    /// Completion tokens counted in the events so far.
    pub counted: u64,
}

impl StreamMeter {
    pub fn new(endpoint: Endpoint, model: &str, drop_usage_chunk: bool) -> StreamMeter {
        StreamMeter {
            endpoint,
            framer: SseFramer::default(),
            drop_usage_chunk,
            tokenizer: super::tokens::tokenizer(model),
            usage: None,
            counted: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Vec<Metered> {
        let events = self.framer.push(bytes);
        events.into_iter().filter_map(|e| self.event(e)).collect()
    }

    /// The stream ended: an unterminated last event is passed on as it is.
    pub fn finish(&mut self) -> Vec<Metered> {
        let rest = self.framer.take_rest();
        if rest.is_empty() {
            return Vec::new();
        }
        vec![Metered {
            raw: rest,
            tokens: 0,
        }]
    }

    fn event(&mut self, event: Event) -> Option<Metered> {
        let Some(data) = event.data() else {
            return Some(Metered {
                raw: event.raw,
                tokens: 0,
            });
        };
        let Ok(json) = serde_json::from_str::<Value>(&data) else {
            // `[DONE]`, or text the meter does not understand: passed on, costs nothing here.
            return Some(Metered {
                raw: event.raw,
                tokens: 0,
            });
        };
        if let Some(usage) = from_json(&json) {
            self.usage = Some(usage);
            let usage_only = json
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if self.drop_usage_chunk && usage_only {
                return None;
            }
        }
        let tokens = self.completion_tokens(&json);
        self.counted += tokens;
        Some(Metered {
            raw: event.raw,
            tokens,
        })
    }

    /// Tokens of the generated text in one chunk or event.
    fn completion_tokens(&self, json: &Value) -> u64 {
        let mut tokens = 0;
        let mut add = |text: Option<&str>| {
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                tokens += super::tokens::count(self.tokenizer, t);
            }
        };
        match self.endpoint {
            Endpoint::Responses => {
                let kind = json.get("type").and_then(Value::as_str).unwrap_or("");
                if kind.ends_with(".delta") {
                    add(json.get("delta").and_then(Value::as_str));
                }
            }
            _ => {
                let choices = json.get("choices").and_then(Value::as_array);
                for choice in choices.into_iter().flatten() {
                    add(choice.get("text").and_then(Value::as_str));
                    let Some(delta) = choice.get("delta") else {
                        continue;
                    };
                    add(delta.get("content").and_then(Value::as_str));
                    add(delta.get("refusal").and_then(Value::as_str));
                    let calls = delta.get("tool_calls").and_then(Value::as_array);
                    for call in calls.into_iter().flatten() {
                        add(call.pointer("/function/arguments").and_then(Value::as_str));
                    }
                }
            }
        }
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_in_both_shapes() {
        let chat =
            json!({"usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}});
        assert_eq!(
            from_json(&chat),
            Some(Usage {
                prompt: 5,
                completion: 6,
                total: 11
            })
        );
        let responses = json!({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 4}}});
        assert_eq!(from_json(&responses).unwrap().total, 7);
        assert_eq!(from_json(&json!({"usage": null})), None);
    }

    #[test]
    fn the_usage_chunk_is_read_and_dropped_when_the_client_did_not_ask() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello world\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n",
            "data: [DONE]\n\n"
        );
        for drop in [true, false] {
            let mut meter = StreamMeter::new(Endpoint::ChatCompletions, "gpt-4o", drop);
            // Split at every byte: framing must not depend on how the network cut it.
            let mut out = Vec::new();
            for b in stream.as_bytes().chunks(7) {
                out.extend(meter.push(b));
            }
            out.extend(meter.finish());
            assert_eq!(meter.usage.unwrap().total, 6);
            assert_eq!(meter.counted, 2);
            let text: Vec<u8> = out.iter().flat_map(|m| m.raw.clone()).collect();
            let text = String::from_utf8(text).unwrap();
            assert_eq!(text.contains("\"usage\""), !drop);
            assert!(text.ends_with("data: [DONE]\n\n"));
        }
    }
}
