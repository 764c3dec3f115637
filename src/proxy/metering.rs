//! Holding a stream to its token budget while it runs. Each event's completion tokens are
//! counted; when the count passes what the request reserved, more is taken from the limits.
//! When none is left, `limits.on_exceed` decides: `finish` lets the stream run on (the
//! overshoot is charged at settlement), `cut` ends it at this event boundary with a final
//! `rate_limit_exceeded` error event.

use crate::config::OnExceed;
use crate::guard::sse;
use crate::limits::usage::{Metered, StreamMeter};

use super::ctx::RequestCtx;
use super::Gateway;

/// Tokens taken beyond the immediate need, so a long stream does not ask for every event.
const TOP_UP: u64 = 64;

/// Passes a piece of the answer (`last`: the stream's end) through the meter: the bytes that
/// may go to the client, and whether the stream ends here.
pub async fn pass(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    meter: &mut StreamMeter,
    bytes: &[u8],
    last: bool,
) -> (Vec<u8>, bool) {
    let mut events = meter.push(bytes);
    if last {
        events.extend(meter.finish());
    }
    ctx.limits.usage = meter.usage.or(ctx.limits.usage);
    within_limits(gw, ctx, events).await
}

/// The bytes of `events` that may go to the client, and whether the stream ends here.
async fn within_limits(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    events: Vec<Metered>,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    for event in events {
        if event.tokens > 0
            && ctx.limits.overrun.is_none()
            && !within_budget(gw, ctx, event.tokens).await
        {
            match gw.config.limits.on_exceed {
                OnExceed::Finish => ctx.limits.overrun = Some(false),
                OnExceed::Cut => {
                    // The provider produced these tokens: they are charged, not delivered.
                    ctx.limits.streamed += event.tokens;
                    ctx.limits.overrun = Some(true);
                    ctx.outcome.error_code = Some("rate_limit_exceeded");
                    out.extend_from_slice(&sse::data_event(&cut_error(ctx).to_string()));
                    return (out, true);
                }
            }
        }
        ctx.limits.streamed += event.tokens;
        out.extend_from_slice(&event.raw);
    }
    (out, false)
}

/// Whether `more` streamed tokens still fit the reservation, taking more from the limits when
/// they do not.
async fn within_budget(gw: &Gateway, ctx: &mut RequestCtx, more: u64) -> bool {
    let prompt = ctx.limits.prompt_tokens;
    let streamed = ctx.limits.streamed + more;
    let Some(admitted) = ctx.limits.admitted.as_mut() else {
        return true;
    };
    let budget = admitted.reserved.saturating_sub(prompt);
    if streamed <= budget {
        return true;
    }
    let need = streamed - budget;
    gw.limiter.extend(admitted, need + TOP_UP).await || gw.limiter.extend(admitted, need).await
}

fn cut_error(ctx: &RequestCtx) -> serde_json::Value {
    let tokens = ctx.limits.headers.tokens;
    let limit = tokens.map_or(0, |g| g.limit);
    serde_json::json!({"error": {
        "message": format!("The answer was cut: it ran past the tokens per minute limit ({limit}) of this key or tenant."),
        "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})
}
