"""Drive Portcullis with the official `openai` Python package, as an application would.

Run by tests/openai_python.rs with PORTCULLIS_BASE_URL and PORTCULLIS_KEY set. Every check
asserts; the last line printed is a JSON summary the Rust test reads.
"""

import json
import os
import sys

import openai
from openai import OpenAI

base_url = os.environ["PORTCULLIS_BASE_URL"]
key = os.environ["PORTCULLIS_KEY"]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)
summary = {"openai_version": openai.__version__}

# Non-streaming chat through the openai-kind provider (the in-process mock upstream).
resp = client.chat.completions.create(
    model="mock-json", messages=[{"role": "user", "content": "Say hello"}]
)
assert resp.choices[0].message.content == "Hello from the mock upstream.", resp
assert resp.usage.total_tokens == 11, resp.usage
summary["chat"] = resp.choices[0].message.content

# Streaming chat: the SDK must see all the text, in order, then the end of the stream. (The
# guardrails may merge deltas they held back while checking them.)
stream = client.chat.completions.create(
    model="mock-stream",
    messages=[{"role": "user", "content": "Count"}],
    stream=True,
)
deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
assert "".join(deltas) == "".join(f"tok{i} " for i in range(21)), deltas
summary["stream_chunks"] = len(deltas)

# Guardrails, as the SDK sees them. PII in a streamed answer arrives redacted, even split
# across events.
stream = client.chat.completions.create(
    model="mock-scripted",
    messages=[{"role": "user", "content": "contact?"}],
    stream=True,
    extra_body={"metadata": {"answer": "Mail jane.doe@example.com today.", "event_chars": "5"}},
)
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert text == "Mail [EMAIL] today.", text
# A blocked prompt is a BadRequestError with our code; the value is not echoed.
secret = "AKIA2E0A8F3B244C9986"
try:
    client.chat.completions.create(
        model="mock-json", messages=[{"role": "user", "content": f"deploy with {secret}"}]
    )
    raise AssertionError("secret in the prompt was not blocked")
except openai.BadRequestError as e:
    assert e.code == "guardrail_blocked", e.body
    assert secret not in str(e.body) and "API_SECRET" in str(e.body), e.body
# A blocked streamed answer raises in the middle of the iteration.
stream = client.chat.completions.create(
    model="mock-scripted",
    messages=[{"role": "user", "content": "key?"}],
    stream=True,
    extra_body={"metadata": {"answer": f"Use {secret} to sign in.", "event_chars": "4"}},
)
seen = ""
try:
    for chunk in stream:
        if chunk.choices:
            seen += chunk.choices[0].delta.content or ""
    raise AssertionError("secret in the answer was not blocked")
except openai.APIError as e:
    assert "guardrail" in str(e), e
    assert "AKIA" not in seen, seen
summary["guardrails"] = "ok"

# The built-in demo provider, streamed with usage.
stream = client.chat.completions.create(
    model="demo",
    messages=[{"role": "user", "content": "hello there"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage = "", None
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert text.startswith("Hello from the Portcullis demo provider."), text
assert usage is not None and usage.total_tokens > 0
summary["demo_stream"] = text

# Embeddings and model listing.
emb = client.embeddings.create(model="mock-embed", input="hi")
assert emb.data[0].embedding == [0.1, 0.2, 0.3], emb
models = [m.id for m in client.models.list()]
assert "demo" in models, models
summary["models"] = models

# Errors arrive as the SDK's typed exceptions, with our codes.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.body
try:
    client.chat.completions.create(model="mock-error", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("upstream 429 not passed through")
except openai.RateLimitError as e:
    assert e.status_code == 429
bad = OpenAI(base_url=base_url, api_key="pc_" + "A" * 43, max_retries=0)
try:
    bad.models.list()
    raise AssertionError("unknown key accepted")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e.body
summary["errors"] = "ok"

print(json.dumps(summary))
sys.exit(0)
