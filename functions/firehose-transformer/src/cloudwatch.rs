//! CloudWatch Logs subscription messages, as they reach Firehose (after gunzip).
//!
//! A `CONTROL_MESSAGE` (sent when a subscription is set up) carries no data and is dropped.
//! A `DATA_MESSAGE` becomes one JSON line per log event:
//! `{"logGroup", "logStream", "id", "timestamp", "message"}`, where a message that is itself a
//! JSON object is embedded as an object, and any other message stays a string.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::record::{not_an_object_reason, write_json_string, write_minified};

/// A decoded subscription message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A control message: nothing to deliver.
    Control,
    /// One JSON object (without newline) per log event.
    Data(Vec<Vec<u8>>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    message_type: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    #[serde(default, borrow)]
    log_events: Vec<LogEvent<'a>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    message: String,
}

/// Cheap test: a JSON object that mentions `messageType` and `logEvents` near its start.
pub fn looks_like_subscription(data: &[u8]) -> bool {
    // SIMD substring searches, built once: this test runs on every record.
    static MESSAGE_TYPE: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new(b"\"messageType\""));
    static LOG_EVENTS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"logEvents\""));
    let head = &data[..data.len().min(512)];
    not_an_object_reason(data).is_none()
        && MESSAGE_TYPE.find(head).is_some()
        && LOG_EVENTS.find(data).is_some()
}

/// Parses a subscription message; the error never quotes log content.
pub fn parse(data: &[u8]) -> Result<Message, String> {
    let env: Envelope<'_> = serde_json::from_slice(data).map_err(|e| {
        format!(
            "CloudWatch Logs message is malformed at line {} column {}",
            e.line(),
            e.column()
        )
    })?;
    match env.message_type.as_str() {
        "CONTROL_MESSAGE" => Ok(Message::Control),
        "DATA_MESSAGE" => {
            let mut lines = Vec::with_capacity(env.log_events.len());
            for ev in &env.log_events {
                let mut line = Vec::with_capacity(ev.message.len() + 128);
                line.extend_from_slice(b"{\"logGroup\":");
                write_json_string(&mut line, &env.log_group);
                line.extend_from_slice(b",\"logStream\":");
                write_json_string(&mut line, &env.log_stream);
                line.extend_from_slice(b",\"id\":");
                match ev.id {
                    Some(id) => line.extend_from_slice(id.get().as_bytes()),
                    None => line.extend_from_slice(b"null"),
                }
                line.extend_from_slice(b",\"timestamp\":");
                match ev.timestamp {
                    Some(t) => line.extend_from_slice(t.to_string().as_bytes()),
                    None => line.extend_from_slice(b"null"),
                }
                line.extend_from_slice(b",\"message\":");
                let trimmed = ev.message.trim();
                match serde_json::from_str::<&RawValue>(trimmed) {
                    Ok(raw) if trimmed.starts_with('{') => write_minified(&mut line, raw.get()),
                    _ => write_json_string(&mut line, &ev.message),
                }
                line.push(b'}');
                lines.push(line);
            }
            Ok(Message::Data(lines))
        }
        _ => Err("CloudWatch Logs message has an unknown messageType".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_message_becomes_one_line_per_event_with_json_messages_embedded() {
        let msg =
            br#"{"messageType":"DATA_MESSAGE","owner":"123","logGroup":"/aws/app","logStream":"s1",
            "subscriptionFilters":["f"],"logEvents":[
              {"id":"1","timestamp":1700000000000,"message":"plain text"},
              {"id":"2","timestamp":1700000000001,"message":"{\"level\": \"ERROR\", \"n\": 1}"},
              {"id":"3","timestamp":1700000000002,"message":"[1,2]"}]}"#;
        assert!(looks_like_subscription(msg));
        let Message::Data(lines) = parse(msg).expect("valid") else {
            panic!("data message expected");
        };
        let lines: Vec<String> = lines
            .into_iter()
            .map(|l| String::from_utf8(l).expect("utf8"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"{"logGroup":"/aws/app","logStream":"s1","id":"1","timestamp":1700000000000,"message":"plain text"}"#,
                r#"{"logGroup":"/aws/app","logStream":"s1","id":"2","timestamp":1700000000001,"message":{"level":"ERROR","n":1}}"#,
                r#"{"logGroup":"/aws/app","logStream":"s1","id":"3","timestamp":1700000000002,"message":"[1,2]"}"#,
            ]
        );
    }

    #[test]
    fn control_and_malformed_messages() {
        let ctl = br#"{"messageType":"CONTROL_MESSAGE","logGroup":"","logStream":"","logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert_eq!(parse(ctl), Ok(Message::Control));
        let err = parse(br#"{"messageType":"DATA_MESSAGE","logEvents":[{"message": secret}]}"#)
            .expect_err("malformed");
        assert!(
            err.contains("malformed") && !err.contains("secret"),
            "{err}"
        );
        assert!(!looks_like_subscription(br#"{"a":1}"#));
    }
}
