//! Which JSON fields of the OpenAI API carry message text. The guard scans these and nothing
//! else: never keys, ids, model names, roles, images or token arrays.

use serde_json::Value;

use crate::providers::Endpoint;

type Visit<'a> = &'a mut dyn FnMut(&mut String);

/// A function that visits the text fields of one JSON value.
pub type Walk = fn(&mut Value, &mut dyn FnMut(&mut String));

/// Text fields of a request body:
/// - chat: `messages[].content` (a string, or `text` parts of an array) and
///   `messages[].tool_calls[].function.arguments`;
/// - completions: `prompt` (a string or an array of strings);
/// - embeddings: `input` (a string or an array of strings);
/// - responses: `instructions`, and `input` (a string, or items with `content` strings or
///   text parts, function-call `arguments` and function-call `output`).
pub fn request_texts(endpoint: Endpoint, body: &mut Value, f: Visit<'_>) {
    match endpoint {
        Endpoint::ChatCompletions => {
            for message in array(body.get_mut("messages")) {
                content(message.get_mut("content"), f);
                tool_calls(message.get_mut("tool_calls"), f);
            }
        }
        Endpoint::Completions => strings(body.get_mut("prompt"), f),
        Endpoint::Embeddings => strings(body.get_mut("input"), f),
        Endpoint::Responses => {
            string(body.get_mut("instructions"), f);
            match body.get_mut("input") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => {
                    for item in items {
                        responses_item_texts(item, f);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Text fields of a whole answer:
/// - chat: `choices[].message.content` and `choices[].message.tool_calls[].function.arguments`;
/// - completions: `choices[].text`;
/// - responses: `output[]` items (text parts and function-call arguments);
/// - embeddings: none (vectors).
pub fn response_texts(endpoint: Endpoint, body: &mut Value, f: Visit<'_>) {
    match endpoint {
        Endpoint::ChatCompletions => {
            for choice in array(body.get_mut("choices")) {
                if let Some(message) = choice.get_mut("message") {
                    content(message.get_mut("content"), f);
                    tool_calls(message.get_mut("tool_calls"), f);
                }
            }
        }
        Endpoint::Completions => {
            for choice in array(body.get_mut("choices")) {
                string(choice.get_mut("text"), f);
            }
        }
        Endpoint::Responses => {
            for item in array(body.get_mut("output")) {
                responses_item_texts(item, f);
            }
        }
        Endpoint::Embeddings => {}
    }
}

/// One Responses API item (a message, a function call or a function call's output).
pub fn responses_item_texts(item: &mut Value, f: Visit<'_>) {
    content(item.get_mut("content"), f);
    string(item.get_mut("arguments"), f);
    string(item.get_mut("output"), f);
}

/// One Responses API content part.
pub fn responses_part_texts(part: &mut Value, f: Visit<'_>) {
    if is_text_part(part) {
        string(part.get_mut("text"), f);
    }
}

fn array(value: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    value
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
}

fn string(value: Option<&mut Value>, f: Visit<'_>) {
    if let Some(Value::String(s)) = value {
        f(s);
    }
}

/// A string, or an array of strings (token-id arrays are left alone).
fn strings(value: Option<&mut Value>, f: Visit<'_>) {
    match value {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(s) = item {
                    f(s);
                }
            }
        }
        _ => {}
    }
}

/// Message content: a string, or parts of which only the text ones are scanned.
fn content(value: Option<&mut Value>, f: Visit<'_>) {
    match value {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(parts)) => {
            for part in parts {
                responses_part_texts(part, f);
            }
        }
        _ => {}
    }
}

fn is_text_part(part: &Value) -> bool {
    matches!(
        part.get("type").and_then(Value::as_str),
        Some("text" | "input_text" | "output_text")
    )
}

fn tool_calls(value: Option<&mut Value>, f: Visit<'_>) {
    for call in array(value) {
        if let Some(function) = call.get_mut("function") {
            string(function.get_mut("arguments"), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(endpoint: Endpoint, mut body: Value, request: bool) -> Vec<String> {
        let mut seen = Vec::new();
        let mut visit = |s: &mut String| seen.push(s.clone());
        if request {
            request_texts(endpoint, &mut body, &mut visit);
        } else {
            response_texts(endpoint, &mut body, &mut visit);
        }
        seen
    }

    #[test]
    fn chat_requests_scan_message_text_and_tool_arguments_only() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"email\":\"a@b.co\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found"}]});
        assert_eq!(
            collect(Endpoint::ChatCompletions, body, true),
            vec![
                "be brief",
                "what is in this image?",
                "{\"email\":\"a@b.co\"}",
                "found"
            ]
        );
    }

    #[test]
    fn completions_embeddings_and_responses_requests() {
        assert_eq!(
            collect(Endpoint::Completions, json!({"prompt": ["a", "b"]}), true),
            vec!["a", "b"]
        );
        assert!(collect(Endpoint::Embeddings, json!({"input": [[1, 2, 3]]}), true).is_empty());
        let body = json!({"instructions": "sys", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                         {"type": "input_image", "image_url": "x"}]},
            {"type": "function_call_output", "call_id": "c", "output": "out"}]});
        assert_eq!(
            collect(Endpoint::Responses, body, true),
            vec!["sys", "hi", "out"]
        );
    }

    #[test]
    fn answers() {
        let chat = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "hello"}}]});
        assert_eq!(
            collect(Endpoint::ChatCompletions, chat, false),
            vec!["hello"]
        );
        let responses = json!({"output": [{"type": "message", "content": [
            {"type": "output_text", "text": "hey", "annotations": []}]}]});
        assert_eq!(collect(Endpoint::Responses, responses, false), vec!["hey"]);
        let embeddings = json!({"data": [{"embedding": [0.1]}]});
        assert!(collect(Endpoint::Embeddings, embeddings, false).is_empty());
    }
}
