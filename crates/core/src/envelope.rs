//! The envelope of events on the log: key, standard headers (correlation id, event type, schema version,
//! production time) and JSON payload.

use crate::events::Event;
use crate::ids::CorrelationId;
use crate::ports::{OutgoingRecord, Record};
use crate::time::now_millis;

/// Version of the event payload schemas; bumped on an incompatible change.
pub const SCHEMA_VERSION: &str = "1";
/// Header carrying the correlation id of the request that caused the event.
pub const HEADER_CORRELATION_ID: &str = "correlation-id";
/// Header naming the payload type, checked before decoding.
pub const HEADER_EVENT_TYPE: &str = "event-type";
/// Header carrying [`SCHEMA_VERSION`].
pub const HEADER_SCHEMA_VERSION: &str = "schema-version";
/// Header carrying the production time (ms).
pub const HEADER_PRODUCED_AT: &str = "produced-at";

/// Why a record could not be turned back into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The `event-type` header is missing or names another type.
    #[error("expected event type {expected:?}, found {found:?}")]
    WrongType {
        /// The type the consumer handles.
        expected: &'static str,
        /// The header's value, if any.
        found: Option<String>,
    },
    /// The payload is not valid JSON for the type (or breaks a validation rule).
    #[error("undecodable payload: {0}")]
    Payload(String),
}

/// Wraps an event into a record with the standard headers.
pub fn encode<E: Event>(event: &E, correlation_id: &CorrelationId) -> OutgoingRecord {
    OutgoingRecord {
        key: event.key().to_owned(),
        headers: vec![
            (
                HEADER_CORRELATION_ID.into(),
                correlation_id.as_str().to_owned(),
            ),
            (HEADER_EVENT_TYPE.into(), E::TYPE.into()),
            (HEADER_SCHEMA_VERSION.into(), SCHEMA_VERSION.into()),
            (HEADER_PRODUCED_AT.into(), now_millis().to_string()),
        ],
        payload: serde_json::to_vec(event).expect("events serialise to JSON"),
    }
}

/// Reads an event back from a record, checking its type header.
pub fn decode<E: Event>(record: &Record) -> Result<E, DecodeError> {
    let found = record.header(HEADER_EVENT_TYPE);
    if found != Some(E::TYPE) {
        return Err(DecodeError::WrongType {
            expected: E::TYPE,
            found: found.map(str::to_owned),
        });
    }
    serde_json::from_slice(&record.payload).map_err(|e| DecodeError::Payload(e.to_string()))
}

/// The correlation id a record carries, or a fresh one when it has none (so logs always have one).
pub fn correlation_of(record: &Record) -> CorrelationId {
    CorrelationId::from_header_or_new(record.header(HEADER_CORRELATION_ID))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{MessageAccepted, StatusUpdate};
    use crate::ids::MessageId;
    use crate::status::MessageStatus;

    fn as_record(out: OutgoingRecord) -> Record {
        Record {
            partition: 0,
            offset: 7,
            key: out.key,
            headers: out.headers,
            payload: out.payload,
            timestamp: 0,
        }
    }

    fn update() -> StatusUpdate {
        StatusUpdate {
            message_id: MessageId::generate(),
            status: MessageStatus::Delivered,
            at: 1,
            detail: Some("ok".into()),
            correlation_id: None,
            replay: false,
        }
    }

    #[test]
    fn round_trips_with_headers() {
        let event = update();
        let cid = CorrelationId::parse("req-42").unwrap();
        let record = as_record(encode(&event, &cid));
        assert_eq!(record.key, event.message_id.as_str());
        assert_eq!(record.header(HEADER_SCHEMA_VERSION), Some(SCHEMA_VERSION));
        assert!(record.header(HEADER_PRODUCED_AT).is_some());
        assert_eq!(correlation_of(&record), cid);
        assert_eq!(decode::<StatusUpdate>(&record).unwrap(), event);
    }

    #[test]
    fn refuses_wrong_type_and_garbage() {
        let cid = CorrelationId::parse("c").unwrap();
        let record = as_record(encode(&update(), &cid));
        assert!(matches!(
            decode::<MessageAccepted>(&record),
            Err(DecodeError::WrongType { .. })
        ));
        let mut garbage = record.clone();
        garbage.payload = b"{not json".to_vec();
        assert!(matches!(
            decode::<StatusUpdate>(&garbage),
            Err(DecodeError::Payload(_))
        ));
        let mut invalid_id = record;
        invalid_id.payload = br#"{"message_id":"a b","status":"SENT","at":1}"#.to_vec();
        assert!(matches!(
            decode::<StatusUpdate>(&invalid_id),
            Err(DecodeError::Payload(_))
        ));
    }
}
