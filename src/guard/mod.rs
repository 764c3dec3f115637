//! Guard phase: the guardrails over the text of a request on its way to the provider, and over
//! the answer on its way back — whole JSON bodies, and SSE streams event by event.
//!
//! Only message text is scanned (see [`fields`]): never JSON keys, ids, model names or base64
//! images. What was found goes into [`GuardState::report`] (types, actions and counts), which
//! the `logging` phase turns into metrics.

pub mod fields;
pub mod scan;
pub mod sse;

use std::collections::BTreeMap;
use std::sync::Arc;

use guardrails::policy::{Checked, Direction, Guard, Policy, Pseudonyms, Report};
use guardrails::stream::{Released, StreamScanner};
use guardrails::Engine;
use serde_json::{json, Value};

use crate::providers::Endpoint;
use sse::{Event, SseFramer};

/// The guard's part of a request's context.
#[derive(Debug, Default)]
pub struct GuardState {
    /// The policy in force, once the caller is known.
    pub policy: Option<Arc<Policy>>,
    /// This request's pseudonyms; dropped with the request, never stored.
    pub pseudonyms: Pseudonyms,
    pub report: Report,
}

/// A `block` action fired; the report names the types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked;

impl GuardState {
    fn guard<'a>(&'a mut self, engine: &'a Engine, direction: Direction) -> Option<Guard<'a>> {
        let policy = self.policy.as_deref()?;
        Some(Guard {
            engine,
            rules: policy.rules(direction),
            direction,
            pseudonyms: &mut self.pseudonyms,
            report: &mut self.report,
        })
    }

    /// Whether the answer must be looked at: the policy scans answers, or pseudonyms handed
    /// out in the request have to be turned back into values.
    pub fn checks_response(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.response.is_active()) || !self.pseudonyms.is_empty()
    }

    /// The message for a `guardrail_blocked` error: the policy and the types, never values.
    pub fn blocked_message(&self, direction: Direction) -> String {
        let policy = self.policy.as_ref().map_or("", |p| p.name.as_str());
        let types = self.report.blocked_names(direction).join(", ");
        match direction {
            Direction::Request => format!(
                "The request was blocked by guardrail policy '{policy}': it contains {types}."
            ),
            Direction::Response => format!(
                "The model's answer was blocked by guardrail policy '{policy}': it contains {types}."
            ),
        }
    }
}

/// Checks every text field of a request body in place. `Ok(true)` when something was rewritten.
pub fn check_request(
    engine: &Engine,
    state: &mut GuardState,
    endpoint: Endpoint,
    body: &mut Value,
) -> Result<bool, Blocked> {
    let Some(mut guard) = state.guard(engine, Direction::Request) else {
        return Ok(false);
    };
    if !guard.rules.is_active() {
        return Ok(false);
    }
    check_texts(&mut guard, |f| fields::request_texts(endpoint, body, f))
}

/// Checks every text field of a whole (non-streamed) answer in place.
pub fn check_response(
    engine: &Engine,
    state: &mut GuardState,
    endpoint: Endpoint,
    body: &mut Value,
) -> Result<bool, Blocked> {
    let Some(mut guard) = state.guard(engine, Direction::Response) else {
        return Ok(false);
    };
    let changed = check_texts(&mut guard, |f| fields::response_texts(endpoint, body, f))?;
    if changed {
        // Log-probabilities repeat the original tokens: they would undo the rewrite.
        drop_logprobs(body);
    }
    Ok(changed)
}

/// Removes `choices[].logprobs` (token texts and alternatives) from an answer or a chunk;
/// `true` when there were any.
fn drop_logprobs(body: &mut Value) -> bool {
    let mut dropped = false;
    if let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            if let Some(lp) = choice.get_mut("logprobs").filter(|lp| !lp.is_null()) {
                *lp = Value::Null;
                dropped = true;
            }
        }
    }
    dropped
}

fn check_texts(
    guard: &mut Guard<'_>,
    walk: impl FnOnce(&mut dyn FnMut(&mut String)),
) -> Result<bool, Blocked> {
    let mut changed = false;
    let mut blocked = false;
    walk(&mut |text: &mut String| {
        if blocked {
            return;
        }
        match guard.check(text) {
            Checked::Unchanged => {}
            Checked::Rewritten(new) => {
                *text = new;
                changed = true;
            }
            Checked::Blocked => blocked = true,
        }
    });
    if blocked {
        return Err(Blocked);
    }
    Ok(changed)
}

/// The OpenAI-shaped error that replaces a blocked answer, or ends a blocked stream.
pub fn blocked_error_json(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null,
                     "code": "guardrail_blocked"}})
}

/// Guards an SSE answer as it streams: each text delta goes through a [`StreamScanner`] per
/// choice (or output item), so held text is released as soon as it is known to be safe.
#[derive(Debug)]
pub struct SseGuard {
    endpoint: Endpoint,
    holdback: usize,
    framer: SseFramer,
    /// One scanner per stream of text, e.g. `c0` (choice 0's content), `c0t1` (its second tool
    /// call's arguments), `r<item>:<part>` (a Responses API output part).
    scanners: BTreeMap<String, StreamScanner>,
    /// Everything released per Responses API stream, to rewrite its `*.done` events.
    released: BTreeMap<String, String>,
    /// The last chat chunk, as a template for a chunk carrying text flushed at the end.
    template: Option<Value>,
    blocked: bool,
}

impl SseGuard {
    pub fn new(endpoint: Endpoint, holdback: usize) -> SseGuard {
        SseGuard {
            endpoint,
            holdback,
            framer: SseFramer::default(),
            scanners: BTreeMap::new(),
            released: BTreeMap::new(),
            template: None,
            blocked: false,
        }
    }

    /// The stream was cut by a `block`: the caller stops reading the provider.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Feeds bytes from the provider; returns the bytes that may go to the client now.
    pub fn push(&mut self, bytes: &[u8], engine: &Engine, state: &mut GuardState) -> Vec<u8> {
        let mut out = Vec::new();
        for event in self.framer.push(bytes) {
            if self.blocked {
                break;
            }
            self.event(&event, engine, state, &mut out);
        }
        out
    }

    /// The provider's stream ended: releases everything still held.
    pub fn finish(&mut self, engine: &Engine, state: &mut GuardState) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = self.framer.take_rest();
        if !rest.is_empty() && !self.blocked {
            rest.extend_from_slice(b"\n\n");
            for event in self.framer.push(&rest) {
                self.event(&event, engine, state, &mut out);
            }
        }
        if !self.blocked {
            self.flush_all(engine, state, &mut out);
        }
        out
    }

    fn event(&mut self, event: &Event, engine: &Engine, state: &mut GuardState, out: &mut Vec<u8>) {
        let Some(data) = event.data() else {
            out.extend_from_slice(&event.raw);
            return;
        };
        if data.trim() == "[DONE]" {
            self.flush_all(engine, state, out);
            if !self.blocked {
                out.extend_from_slice(&event.raw);
            }
            return;
        }
        let Ok(mut json) = serde_json::from_str::<Value>(&data) else {
            // Not JSON: check it as plain text rather than let it through unchecked.
            self.plain_text_event(event, &data, engine, state, out);
            return;
        };
        let result = match self.endpoint {
            Endpoint::Responses => self.responses_event(&mut json, engine, state, out),
            _ => self.chunk_event(&mut json, engine, state),
        };
        match result {
            Err(Blocked) => self.block(state, out),
            Ok(Emit::Original) => out.extend_from_slice(&event.raw),
            Ok(Emit::Rewritten) => out.extend_from_slice(&event.with_data(&json.to_string())),
            Ok(Emit::Nothing) => {}
        }
    }

    fn plain_text_event(
        &mut self,
        event: &Event,
        data: &str,
        engine: &Engine,
        state: &mut GuardState,
        out: &mut Vec<u8>,
    ) {
        let Some(mut guard) = state.guard(engine, Direction::Response) else {
            out.extend_from_slice(&event.raw);
            return;
        };
        match guard.check(data) {
            Checked::Unchanged => out.extend_from_slice(&event.raw),
            Checked::Rewritten(text) => out.extend_from_slice(&event.with_data(&text)),
            Checked::Blocked => self.block(state, out),
        }
    }

    /// A chat or completions chunk: `choices[].delta.content`, `choices[].delta.tool_calls[]
    /// .function.arguments`, `choices[].text`.
    fn chunk_event(
        &mut self,
        json: &mut Value,
        engine: &Engine,
        state: &mut GuardState,
    ) -> Result<Emit, Blocked> {
        // Streamed log-probabilities carry tokens before the text they spell has been checked.
        let mut changed = drop_logprobs(json);
        let Some(choices) = json.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(Emit::Original);
        };
        let mut has_other_content = false;
        for choice in choices.iter_mut() {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = choice.get("finish_reason").is_some_and(|r| !r.is_null());
            has_other_content |= finished;
            // Chat puts text in delta.content; legacy completions in text.
            let (holder, field) = if choice.get("delta").is_some() {
                (choice.get_mut("delta"), "content")
            } else {
                (Some(&mut *choice), "text")
            };
            let Some(holder) = holder.and_then(Value::as_object_mut) else {
                continue;
            };
            has_other_content |= holder
                .iter()
                .any(|(k, v)| k != field && k != "tool_calls" && !v.is_null());
            let key = format!("c{index}");
            if let Some(text) = holder.get(field).and_then(Value::as_str) {
                let mut released = self.push_text(&key, text, engine, state)?;
                if finished {
                    released.push_str(&self.finish_text(&key, engine, state)?);
                }
                if released != text {
                    holder.insert(field.to_string(), Value::String(released.clone()));
                    changed = true;
                }
                has_other_content |= !released.is_empty();
            } else if finished {
                let rest = self.finish_text(&key, engine, state)?;
                if !rest.is_empty() {
                    holder.insert(field.to_string(), Value::String(rest));
                    changed = true;
                }
            }
            if let Some(calls) = holder.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for call in calls.iter_mut() {
                    let t = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    has_other_content |= call.get("id").is_some_and(|v| !v.is_null());
                    let key = format!("c{index}t{t}");
                    let Some(function) = call.get_mut("function").and_then(Value::as_object_mut)
                    else {
                        continue;
                    };
                    has_other_content |= function.get("name").is_some_and(|v| !v.is_null());
                    if let Some(args) = function.get("arguments").and_then(Value::as_str) {
                        let released = self.push_text(&key, args, engine, state)?;
                        if released != args {
                            function.insert("arguments".into(), Value::String(released.clone()));
                            changed = true;
                        }
                        has_other_content |= !released.is_empty();
                    }
                }
            }
            if finished {
                // Tool-call arguments still held: released in this last chunk of the choice.
                let prefix = format!("c{index}t");
                let keys: Vec<String> = self
                    .scanners
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for key in keys {
                    let rest = self.finish_text(&key, engine, state)?;
                    if rest.is_empty() {
                        continue;
                    }
                    let t: u64 = key[prefix.len()..].parse().unwrap_or(0);
                    let call = json!({"index": t, "function": {"arguments": rest}});
                    match holder.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => {
                            holder.insert("tool_calls".into(), Value::Array(vec![call]));
                        }
                    }
                    changed = true;
                }
            }
        }
        let usage = json.get("usage").is_some_and(|u| !u.is_null());
        let no_choices = json
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        let mut template = json.clone();
        if let Some(choices) = template.get_mut("choices") {
            *choices = Value::Array(Vec::new());
        }
        self.template = Some(template);
        if !changed {
            return Ok(Emit::Original);
        }
        if !has_other_content && !usage && !no_choices {
            // Only held-back text, nothing to show yet.
            return Ok(Emit::Nothing);
        }
        Ok(Emit::Rewritten)
    }

    /// A Responses API event: deltas are streamed through scanners; the events that repeat the
    /// whole text (`*.done`, `response.completed`) are rewritten to match what was released.
    fn responses_event(
        &mut self,
        json: &mut Value,
        engine: &Engine,
        state: &mut GuardState,
        out: &mut Vec<u8>,
    ) -> Result<Emit, Blocked> {
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let item = json
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let part = json
            .get("content_index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match kind.as_str() {
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let key = responses_key(&kind, &item, part);
                let text = json
                    .get("delta")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let released = self.push_text(&key, &text, engine, state)?;
                self.released.entry(key).or_default().push_str(&released);
                // Log-probabilities would show the tokens before they are checked.
                let had_logprobs = json
                    .get("logprobs")
                    .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
                if had_logprobs {
                    json["logprobs"] = Value::Array(Vec::new());
                }
                if released == text && !had_logprobs {
                    return Ok(Emit::Original);
                }
                if released.is_empty() {
                    return Ok(Emit::Nothing);
                }
                json["delta"] = Value::String(released);
                Ok(Emit::Rewritten)
            }
            "response.output_text.done" | "response.function_call_arguments.done" => {
                let key = responses_key(&kind, &item, part);
                let rest = self.finish_text(&key, engine, state)?;
                if !rest.is_empty() {
                    // The held end of the text, as one more delta before the done event.
                    let mut delta = json.clone();
                    let delta_kind = kind.replace(".done", ".delta");
                    delta["type"] = Value::String(delta_kind.clone());
                    if let Some(o) = delta.as_object_mut() {
                        o.remove("text");
                        o.remove("arguments");
                    }
                    delta["delta"] = Value::String(rest.clone());
                    out.extend_from_slice(&sse::named_event(&delta_kind, &delta.to_string()));
                    self.released
                        .entry(key.clone())
                        .or_default()
                        .push_str(&rest);
                }
                let field = if kind == "response.output_text.done" {
                    "text"
                } else {
                    "arguments"
                };
                let full = self.released.get(&key).cloned().unwrap_or_default();
                if json.get(field).and_then(Value::as_str) == Some(full.as_str()) {
                    return Ok(Emit::Original);
                }
                json[field] = Value::String(full);
                Ok(Emit::Rewritten)
            }
            "response.content_part.done"
            | "response.output_item.done"
            | "response.completed"
            | "response.incomplete"
            | "response.failed" => {
                let target = match kind.as_str() {
                    "response.content_part.done" => json.get_mut("part"),
                    "response.output_item.done" => json.get_mut("item"),
                    _ => json.get_mut("response"),
                };
                let Some(target) = target else {
                    return Ok(Emit::Original);
                };
                let changed = match kind.as_str() {
                    "response.content_part.done" => {
                        check_response_value(engine, state, target, fields::responses_part_texts)?
                    }
                    "response.output_item.done" => {
                        check_response_value(engine, state, target, fields::responses_item_texts)?
                    }
                    _ => check_response(engine, state, Endpoint::Responses, target)?,
                };
                Ok(if changed {
                    Emit::Rewritten
                } else {
                    Emit::Original
                })
            }
            _ => Ok(Emit::Original),
        }
    }

    fn push_text(
        &mut self,
        key: &str,
        text: &str,
        engine: &Engine,
        state: &mut GuardState,
    ) -> Result<String, Blocked> {
        let Some(mut guard) = state.guard(engine, Direction::Response) else {
            return Ok(text.to_string());
        };
        let holdback = self.holdback;
        let scanner = self
            .scanners
            .entry(key.to_string())
            .or_insert_with(|| StreamScanner::new(holdback));
        match scanner.push(text, &mut guard) {
            Released::Text(t) => Ok(t),
            Released::Blocked => Err(Blocked),
        }
    }

    fn finish_text(
        &mut self,
        key: &str,
        engine: &Engine,
        state: &mut GuardState,
    ) -> Result<String, Blocked> {
        let Some(mut scanner) = self.scanners.remove(key) else {
            return Ok(String::new());
        };
        let Some(mut guard) = state.guard(engine, Direction::Response) else {
            return Ok(String::new());
        };
        match scanner.finish(&mut guard) {
            Released::Text(t) => Ok(t),
            Released::Blocked => Err(Blocked),
        }
    }

    /// End of stream: text still held goes out in one more chunk per choice.
    fn flush_all(&mut self, engine: &Engine, state: &mut GuardState, out: &mut Vec<u8>) {
        let keys: Vec<String> = self.scanners.keys().cloned().collect();
        for key in keys {
            let rest = match self.finish_text(&key, engine, state) {
                Ok(rest) => rest,
                Err(Blocked) => return self.block(state, out),
            };
            if rest.is_empty() {
                continue;
            }
            match self.endpoint {
                Endpoint::Responses => {
                    let kind = if key.starts_with('f') {
                        "response.function_call_arguments.delta"
                    } else {
                        "response.output_text.delta"
                    };
                    let event = json!({"type": kind, "delta": rest});
                    out.extend_from_slice(&sse::named_event(kind, &event.to_string()));
                }
                _ => {
                    let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
                    let choice = flushed_choice(&key, rest, self.endpoint);
                    chunk["choices"] = Value::Array(vec![choice]);
                    out.extend_from_slice(&sse::data_event(&chunk.to_string()));
                }
            }
        }
    }

    fn block(&mut self, state: &GuardState, out: &mut Vec<u8>) {
        self.blocked = true;
        self.scanners.clear();
        let error = blocked_error_json(&state.blocked_message(Direction::Response));
        out.extend_from_slice(&sse::data_event(&error.to_string()));
    }
}

/// What to send for one event.
enum Emit {
    Original,
    Rewritten,
    Nothing,
}

fn responses_key(kind: &str, item: &str, part: u64) -> String {
    if kind.starts_with("response.function_call_arguments") {
        format!("f{item}")
    } else {
        format!("r{item}:{part}")
    }
}

/// A choice carrying text flushed at the end of a chat or completions stream.
fn flushed_choice(key: &str, text: String, endpoint: Endpoint) -> Value {
    // Keys are `c<choice>` or `c<choice>t<tool call>`.
    let body = &key[1..];
    let (choice, tool) = match body.split_once('t') {
        Some((c, t)) => (c.parse::<u64>().unwrap_or(0), t.parse::<u64>().ok()),
        None => (body.parse::<u64>().unwrap_or(0), None),
    };
    match (endpoint, tool) {
        (Endpoint::Completions, _) => {
            json!({"index": choice, "text": text, "finish_reason": null})
        }
        (_, Some(t)) => json!({"index": choice, "delta": {"tool_calls": [
            {"index": t, "function": {"arguments": text}}]}, "finish_reason": null}),
        (_, None) => json!({"index": choice, "delta": {"content": text}, "finish_reason": null}),
    }
}

fn check_response_value(
    engine: &Engine,
    state: &mut GuardState,
    value: &mut Value,
    walk: fields::Walk,
) -> Result<bool, Blocked> {
    let Some(mut guard) = state.guard(engine, Direction::Response) else {
        return Ok(false);
    };
    check_texts(&mut guard, |f| walk(value, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrails::policy::Policy;

    fn state() -> GuardState {
        GuardState {
            policy: Some(Arc::new(Policy::builtin_default())),
            ..GuardState::default()
        }
    }

    /// Feeds `sse` to a guard in pieces of `step` bytes; returns the client's bytes.
    fn run(endpoint: Endpoint, sse: &str, step: usize) -> String {
        let engine = Engine::builtin().unwrap();
        let mut state = state();
        let mut guard = SseGuard::new(endpoint, 256);
        let mut out = Vec::new();
        for piece in sse.as_bytes().chunks(step) {
            out.extend(guard.push(piece, &engine, &mut state));
        }
        out.extend(guard.finish(&engine, &mut state));
        String::from_utf8(out).unwrap()
    }

    fn data_events(raw: &str) -> Vec<Value> {
        raw.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn tool_call_arguments_are_guarded_across_deltas() {
        let args = ["{\"to\":\"jane.d", "oe@exam", "ple.com\",\"body\":\"hi\"}"];
        let mut sse = String::new();
        sse.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"send\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n");
        for a in args {
            let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": a}}]}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        sse.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
        for step in [1, 7, 64, sse.len()] {
            let raw = run(Endpoint::ChatCompletions, &sse, step);
            assert!(!raw.contains("jane"), "step {step}: {raw}");
            let arguments: String = data_events(&raw)
                .iter()
                .filter_map(|e| {
                    e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .map(String::from)
                })
                .collect();
            assert_eq!(
                arguments, "{\"to\":\"[EMAIL]\",\"body\":\"hi\"}",
                "step {step}"
            );
            assert!(raw.contains("\"call_1\"") && raw.ends_with("data: [DONE]\n\n"));
        }
    }

    #[test]
    fn responses_api_deltas_and_done_events_agree() {
        let deltas = ["Write to jane.d", "oe@example.com", " today."];
        let mut sse = String::new();
        for d in deltas {
            let e = json!({"type": "response.output_text.delta", "item_id": "msg_1",
                           "output_index": 0, "content_index": 0, "delta": d});
            sse.push_str(&format!("event: response.output_text.delta\ndata: {e}\n\n"));
        }
        let full: String = deltas.concat();
        let done = json!({"type": "response.output_text.done", "item_id": "msg_1",
                          "output_index": 0, "content_index": 0, "text": full});
        sse.push_str(&format!(
            "event: response.output_text.done\ndata: {done}\n\n"
        ));
        let completed = json!({"type": "response.completed", "response": {"output": [
            {"type": "message", "content": [{"type": "output_text", "text": full}]}]}});
        sse.push_str(&format!("event: response.completed\ndata: {completed}\n\n"));

        for step in [3, 50, sse.len()] {
            let raw = run(Endpoint::Responses, &sse, step);
            assert!(!raw.contains("jane"), "step {step}: {raw}");
            let events = data_events(&raw);
            let streamed: String = events
                .iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .filter_map(|e| e["delta"].as_str().map(String::from))
                .collect();
            assert_eq!(streamed, "Write to [EMAIL] today.", "step {step}");
            let done = events
                .iter()
                .find(|e| e["type"] == "response.output_text.done")
                .unwrap();
            assert_eq!(done["text"], "Write to [EMAIL] today.");
            let completed = events
                .iter()
                .find(|e| e["type"] == "response.completed")
                .unwrap();
            assert_eq!(
                completed["response"]["output"][0]["content"][0]["text"],
                "Write to [EMAIL] today."
            );
            assert!(raw.contains("event: response.output_text.done\n"));
        }
    }

    #[test]
    fn log_probabilities_never_carry_unchecked_tokens() {
        let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"logprobs\":{\"content\":[{\"token\":\"hi\",\"logprob\":-0.1}]},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n";
        let raw = run(Endpoint::ChatCompletions, sse, 8);
        assert!(!raw.contains("\"token\""), "{raw}");
        let engine = Engine::builtin().unwrap();
        let mut body = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "mail jane.doe@example.com"}, "logprobs": {"content": [
            {"token": "jane", "logprob": -0.2}]}}]});
        assert_eq!(
            check_response(&engine, &mut state(), Endpoint::ChatCompletions, &mut body),
            Ok(true)
        );
        assert_eq!(body["choices"][0]["message"]["content"], "mail [EMAIL]");
        assert!(body["choices"][0]["logprobs"].is_null());
    }

    #[test]
    fn legacy_completions_stream_text_is_guarded() {
        let mut sse = String::new();
        for t in ["card 4111 11", "11 1111 1111 ok"] {
            let e = json!({"choices": [{"index": 0, "text": t, "finish_reason": null}]});
            sse.push_str(&format!("data: {e}\n\n"));
        }
        sse.push_str("data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        let raw = run(Endpoint::Completions, &sse, 5);
        let text: String = data_events(&raw)
            .iter()
            .filter_map(|e| e["choices"][0]["text"].as_str().map(String::from))
            .collect();
        assert_eq!(text, "card [CREDIT_CARD] ok");
    }
}
