//! Schema pieces the handlers' OpenAPI annotations share (ids, raw bytes, positions, the conversation type, channel
//! names). They live apart from the document itself, which names the handlers, so that no handler imports the
//! document.

use chat4all_core::model::ConversationKind;
use chat4all_core::recipient::KNOWN_CHANNELS;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Object, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An id: 1–128 characters of `[A-Za-z0-9._:@-]`. Clients choose conversation ids and `Idempotency-Key`s; the
/// server makes the others.
pub enum Id {}

impl PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some("^[A-Za-z0-9._:@-]{1,128}$"))
            .into()
    }
}

impl ToSchema for Id {}

/// Raw bytes.
pub enum Binary {}

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

/// A position or count (`seq`, `offset`): 0..2^63-1.
pub fn position() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .build()
}

/// The `type` of a conversation: `direct` or `group`.
pub fn conversation_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            [ConversationKind::Direct, ConversationKind::Group].map(ConversationKind::as_str),
        ))
        .build()
}

/// A channel an identity or a message may name: those that ship with Chat4All (a server accepts the ones it runs).
pub fn platform() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(KNOWN_CHANNELS))
        .build()
}
