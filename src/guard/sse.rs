//! Incremental server-sent-events framing: bytes in whatever pieces the network delivers,
//! whole events out. An event ends at a blank line (`\n\n`, or `\r\n\r\n`).

/// Splits a byte stream into complete SSE events, keeping each event's exact bytes.
#[derive(Debug, Default)]
pub struct SseFramer {
    buffer: Vec<u8>,
}

/// One event: its raw bytes (terminator included) and the fields the guard needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub raw: Vec<u8>,
}

impl Event {
    /// The `data:` lines joined by `\n` (the SSE rule), or `None` for an event without data
    /// (a comment or keep-alive) or one that is not UTF-8.
    pub fn data(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.raw).ok()?;
        let mut data: Option<String> = None;
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match data.as_mut() {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
        data
    }

    /// The event with its data replaced, every other line (`event:`, `id:`, comments) kept.
    pub fn with_data(&self, data: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(&self.raw);
        let mut out = String::with_capacity(data.len() + 32);
        let mut wrote_data = false;
        for line in text.lines() {
            let bare = line.strip_suffix('\r').unwrap_or(line);
            if bare.is_empty() {
                continue;
            }
            if bare.starts_with("data:") {
                if !wrote_data {
                    for data_line in data.split('\n') {
                        out.push_str("data: ");
                        out.push_str(data_line);
                        out.push('\n');
                    }
                    wrote_data = true;
                }
                continue;
            }
            out.push_str(bare);
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// An event with only a data field.
pub fn data_event(data: &str) -> Vec<u8> {
    format!("data: {data}\n\n").into_bytes()
}

/// An event with a name and a data field (the Responses API names its events).
pub fn named_event(name: &str, data: &str) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

impl SseFramer {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            events.push(Event { raw });
        }
        events
    }

    /// Bytes of an unfinished event at the end of the stream.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }
}

/// The index just past the first event terminator, if a whole event is buffered.
fn event_end(buffer: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buffer.len() {
        if buffer[i] == b'\n' {
            if buffer[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buffer[i + 1] == b'\r' && buffer.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"data: {\"a\":1}\n\n: keep-alive\n\nevent: x\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n";

    #[test]
    fn events_are_the_same_at_every_split_point() {
        for cut in 0..=STREAM.len() {
            let mut framer = SseFramer::default();
            let mut events = framer.push(&STREAM[..cut]);
            events.extend(framer.push(&STREAM[cut..]));
            let data: Vec<Option<String>> = events.iter().map(Event::data).collect();
            assert_eq!(
                data,
                vec![
                    Some("{\"a\":1}".to_string()),
                    None,
                    Some("{\"b\":\n2}".to_string()),
                    Some("[DONE]".to_string())
                ],
                "cut at {cut}"
            );
            assert!(framer.take_rest().is_empty());
        }
    }

    #[test]
    fn replacing_data_keeps_the_other_lines() {
        let event = Event {
            raw: b"event: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\n".to_vec(),
        };
        assert_eq!(
            event.with_data("{\"delta\":\"y\"}"),
            b"event: response.output_text.delta\ndata: {\"delta\":\"y\"}\n\n".to_vec()
        );
    }
}
