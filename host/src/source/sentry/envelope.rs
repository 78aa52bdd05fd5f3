//! The Sentry envelope wire format: a JSON header line, then items, each
//! an item-header line and a payload (of `length` bytes, or up to the next
//! newline).

use serde_json::{Map, Value};

use crate::event::FieldError;

/// A parsed envelope: its header and items (payloads borrow the body).
#[derive(Debug)]
pub struct Envelope<'a> {
    pub header: Map<String, Value>,
    pub items: Vec<Item<'a>>,
}

/// One envelope item.
#[derive(Debug)]
pub struct Item<'a> {
    /// Position among the items (0-based), as errors name it.
    pub index: usize,
    pub kind: String,
    pub payload: &'a [u8],
}

/// Splits at the first newline: the line (without `\r\n` / `\n`) and what
/// follows it.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            let line = &data[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &data[i + 1..])
        }
        None => (data, &[]),
    }
}

/// Parses Sentry's envelope format: a JSON header line, then items, each a
/// JSON header line and a payload of `length` bytes or, without `length`,
/// up to the next newline.
pub fn parse_envelope(data: &[u8]) -> Result<Envelope<'_>, FieldError> {
    let fail = |item: usize, field: &str, reason: String| FieldError {
        item,
        field: field.into(),
        reason,
    };
    let (line, mut rest) = split_line(data);
    let header = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(fail(0, "envelope header", "must be a JSON object".into()));
        }
        Err(e) => {
            return Err(fail(
                0,
                "envelope header",
                format!("is not valid JSON: {e}"),
            ));
        }
    };
    let mut items = Vec::new();
    loop {
        // Blank lines between items are tolerated.
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        let (line, after) = split_line(rest);
        let item_header = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(fail(index, "item header", "must be a JSON object".into())),
            Err(e) => {
                return Err(fail(
                    index,
                    "item header",
                    format!("is not valid JSON: {e}"),
                ))
            }
        };
        let kind = match item_header.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => {
                return Err(fail(
                    index,
                    "type",
                    "item header needs a string `type`".into(),
                ))
            }
        };
        let payload;
        match item_header.get("length") {
            None | Some(Value::Null) => {
                let (line, after) = split_line(after);
                payload = line;
                rest = after;
            }
            Some(Value::Number(n)) => {
                let Some(len) = n.as_u64().and_then(|l| usize::try_from(l).ok()) else {
                    return Err(fail(index, "length", format!("{n} is not a byte count")));
                };
                if len > after.len() {
                    return Err(fail(
                        index,
                        "length",
                        format!("says {len} bytes but only {} follow", after.len()),
                    ));
                }
                payload = &after[..len];
                let tail = &after[len..];
                rest = tail
                    .strip_prefix(b"\r\n")
                    .or_else(|| tail.strip_prefix(b"\n"))
                    .unwrap_or(tail);
            }
            Some(other) => {
                return Err(fail(
                    index,
                    "length",
                    format!("must be a number, got {other}"),
                ));
            }
        }
        items.push(Item {
            index,
            kind,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_with_and_without_lengths() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\",\"length\":10}\nhello\nworl\n{\"type\":\"event\"}\n{\"message\":\"x\"}";
        let env = parse_envelope(body).expect("valid");
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].payload, b"hello\nworl");
        assert_eq!(
            (env.items[1].kind.as_str(), env.items[1].payload),
            ("event", &b"{\"message\":\"x\"}"[..])
        );
        let body = b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n\n{\"type\":\"session\"}\n{}\n";
        let env = parse_envelope(body).expect("valid");
        assert_eq!(env.items.len(), 2);
        let env = parse_envelope(b"{}").expect("header only");
        assert!(env.items.is_empty());
        let e = parse_envelope(b"{}\n{\"type\":\"event\",\"length\":99}\n{}").expect_err("short");
        assert_eq!((e.item, e.field.as_str()), (0, "length"));
        let e = parse_envelope(b"{}\n{\"type\":\"session\"}\n{}\nnot json\n").expect_err("bad");
        assert_eq!((e.item, e.field.as_str()), (1, "item header"));
        let e = parse_envelope(b"nope").expect_err("bad header");
        assert_eq!(e.field, "envelope header");
    }
}
