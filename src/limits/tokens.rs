//! What a request will cost in tokens, before it is sent: its prompt counted with the model
//! family's BPE (o200k for GPT-4o / 4.1 / 5 / o-series and unknown models, cl100k for GPT-4,
//! GPT-3.5 and the embedding models), plus the completion it may produce.
//!
//! The count covers the text fields the guard also reads ([`crate::guard::fields`]), OpenAI's
//! per-message framing (3 tokens a message, 3 to prime the answer), tool definitions (their
//! JSON), images (765 tokens each: a 1024×1024 image at high detail) and token-id arrays.
//! It is an estimate for the reservation; settlement uses the provider's `usage`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::LazyLock;

use bpe_openai::Tokenizer;
use moka::sync::Cache;
use serde_json::Value;

use super::Demand;
use crate::guard::fields;
use crate::providers::Endpoint;

/// Framing tokens around each chat message, and before the answer (OpenAI's cookbook).
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;
/// An image part: a 1024×1024 image at high detail (4 tiles × 170 + 85).
const PER_IMAGE: u64 = 765;
/// Choices per request are capped here when reserving (`n`).
const MAX_CHOICES: u64 = 128;
/// Texts at least this long have their counts remembered: a chat resends its whole history
/// and its system prompt with every turn, so most of a long prompt was counted before.
const CACHED_FROM_BYTES: usize = 256;

/// Token counts of recent long texts, by tokenizer and a hash of the text. A collision would
/// only skew one estimate, which settlement corrects.
static COUNTS: LazyLock<(Cache<u64, u64>, std::collections::hash_map::RandomState)> =
    LazyLock::new(|| {
        (
            Cache::builder().max_capacity(100_000).build(),
            std::collections::hash_map::RandomState::new(),
        )
    });

/// The tokenizer of a model's family.
pub fn tokenizer(model: &str) -> &'static Tokenizer {
    let m = model.to_ascii_lowercase();
    // The model may carry a provider prefix ("openai/gpt-4").
    let m = m.rsplit('/').next().unwrap_or(&m);
    let cl100k = (m.starts_with("gpt-4")
        && !m.starts_with("gpt-4o")
        && !m.starts_with("gpt-4.1")
        && !m.starts_with("gpt-4.5"))
        || m.starts_with("gpt-3.5")
        || m.starts_with("text-embedding-3")
        || m.starts_with("text-embedding-ada");
    if cl100k {
        bpe_openai::cl100k_base()
    } else {
        bpe_openai::o200k_base()
    }
}

/// Loads both tables (tens of milliseconds) so the first limited request does not pay it.
pub fn warm_up() {
    let _ = bpe_openai::o200k_base().count("warm");
    let _ = bpe_openai::cl100k_base().count("warm");
}

pub fn count(tokenizer: &Tokenizer, text: &str) -> u64 {
    tokenizer.count(text) as u64
}

/// [`count`], remembered for long texts.
fn count_cached(tokenizer: &'static Tokenizer, text: &str) -> u64 {
    if text.len() < CACHED_FROM_BYTES {
        return count(tokenizer, text);
    }
    let (cache, seed) = &*COUNTS;
    let mut hasher = seed.build_hasher();
    (tokenizer as *const Tokenizer as usize).hash(&mut hasher);
    text.hash(&mut hasher);
    cache.get_with(hasher.finish(), || count(tokenizer, text))
}

/// Prompt tokens and the completion tokens to reserve for one request body.
pub fn demand(
    endpoint: Endpoint,
    body: &mut Value,
    model: &str,
    default_completion: u64,
) -> Demand {
    let bpe = tokenizer(model);
    let mut prompt = 0;
    fields::request_texts(endpoint, body, &mut |text: &mut String| {
        prompt += count_cached(bpe, text);
    });
    prompt += framing(endpoint, body, bpe);
    Demand {
        prompt_tokens: prompt,
        completion_tokens: completion(endpoint, body, default_completion),
    }
}

/// Everything that costs tokens besides the text fields.
fn framing(endpoint: Endpoint, body: &Value, bpe: &Tokenizer) -> u64 {
    let mut tokens = 0;
    let tools = |body: &Value| -> u64 {
        ["tools", "functions"]
            .iter()
            .filter_map(|k| body.get(*k))
            .map(|v| count(bpe, &v.to_string()))
            .sum()
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = body.get("messages").and_then(Value::as_array);
            for message in messages.into_iter().flatten() {
                tokens += PER_MESSAGE + images(message.get("content"));
                if message.get("name").is_some() {
                    tokens += 1;
                }
            }
            tokens += REPLY_PRIMING + tools(body);
        }
        Endpoint::Responses => {
            if let Some(items) = body.get("input").and_then(Value::as_array) {
                for item in items {
                    tokens += PER_MESSAGE + images(item.get("content"));
                }
            }
            tokens += REPLY_PRIMING + tools(body);
        }
        Endpoint::Completions => tokens += token_ids(body.get("prompt")),
        Endpoint::Embeddings => tokens += token_ids(body.get("input")),
    }
    tokens
}

fn images(content: Option<&Value>) -> u64 {
    let parts = content.and_then(Value::as_array);
    parts
        .into_iter()
        .flatten()
        .filter(|p| {
            matches!(
                p.get("type").and_then(Value::as_str),
                Some("image_url" | "input_image")
            )
        })
        .count() as u64
        * PER_IMAGE
}

/// Token-id prompts: `[1, 2, 3]` or `[[1, 2], [3]]`.
fn token_ids(value: Option<&Value>) -> u64 {
    let Some(Value::Array(items)) = value else {
        return 0;
    };
    items
        .iter()
        .map(|item| match item {
            Value::Number(_) => 1,
            Value::Array(inner) => inner.iter().filter(|v| v.is_number()).count() as u64,
            _ => 0,
        })
        .sum()
}

/// The completion the request may produce: its own cap, else the configured default, for
/// each of its `n` choices.
fn completion(endpoint: Endpoint, body: &Value, default_completion: u64) -> u64 {
    let field = |name: &str| body.get(name).and_then(Value::as_u64);
    let (cap, choices) = match endpoint {
        Endpoint::Embeddings => return 0,
        Endpoint::ChatCompletions => (
            field("max_completion_tokens").or_else(|| field("max_tokens")),
            field("n"),
        ),
        Endpoint::Completions => (field("max_tokens"), field("best_of").max(field("n"))),
        Endpoint::Responses => (field("max_output_tokens"), None),
    };
    cap.unwrap_or(default_completion)
        .saturating_mul(choices.unwrap_or(1).clamp(1, MAX_CHOICES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_families_pick_their_encoding() {
        let o200k = bpe_openai::o200k_base() as *const Tokenizer;
        let cl100k = bpe_openai::cl100k_base() as *const Tokenizer;
        assert_eq!(tokenizer("gpt-4o-mini") as *const _, o200k);
        assert_eq!(tokenizer("gpt-4.1") as *const _, o200k);
        assert_eq!(tokenizer("o3-mini") as *const _, o200k);
        assert_eq!(tokenizer("some-local-model") as *const _, o200k);
        assert_eq!(tokenizer("gpt-4-turbo") as *const _, cl100k);
        assert_eq!(tokenizer("openai/gpt-3.5-turbo") as *const _, cl100k);
        assert_eq!(tokenizer("text-embedding-3-small") as *const _, cl100k);
    }

    #[test]
    fn chat_prompt_counts_text_framing_and_images() {
        // "Hello world" is 2 tokens in o200k.
        let mut body = json!({"model": "gpt-4o", "messages": [
            {"role": "user", "content": "Hello world"},
            {"role": "user", "content": [{"type": "text", "text": "Hello world"},
                                          {"type": "image_url", "image_url": {"url": "data:x"}}]}
        ], "max_tokens": 50, "n": 2});
        let d = demand(Endpoint::ChatCompletions, &mut body, "gpt-4o", 1000);
        assert_eq!(
            d.prompt_tokens,
            2 + 2 + 2 * PER_MESSAGE + PER_IMAGE + REPLY_PRIMING
        );
        assert_eq!(d.completion_tokens, 100);
    }

    #[test]
    fn long_texts_count_the_same_cached_or_not() {
        let text = "Summarise the quarterly figures for the board. ".repeat(20);
        let bpe = tokenizer("gpt-4o");
        assert_eq!(count_cached(bpe, &text), count(bpe, &text));
        assert_eq!(count_cached(bpe, &text), count(bpe, &text));
        let other = tokenizer("gpt-4");
        assert_eq!(count_cached(other, &text), count(other, &text));
    }

    #[test]
    fn completion_caps_and_defaults() {
        let mut body = json!({"model": "m", "messages": [], "max_completion_tokens": 7});
        assert_eq!(
            demand(Endpoint::ChatCompletions, &mut body, "m", 1000).completion_tokens,
            7
        );
        let mut body = json!({"model": "m", "messages": []});
        assert_eq!(
            demand(Endpoint::ChatCompletions, &mut body, "m", 1000).completion_tokens,
            1000
        );
        let mut body = json!({"model": "m", "input": ["a b c", [1, 2, 3]]});
        let d = demand(
            Endpoint::Embeddings,
            &mut body,
            "text-embedding-3-small",
            1000,
        );
        assert_eq!(d.completion_tokens, 0);
        assert_eq!(d.prompt_tokens, 3 + 3);
        let mut body = json!({"model": "m", "input": "hi", "max_output_tokens": 9});
        assert_eq!(
            demand(Endpoint::Responses, &mut body, "m", 1000).completion_tokens,
            9
        );
    }
}
