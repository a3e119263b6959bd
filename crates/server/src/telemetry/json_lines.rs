//! One JSON object per log line, with the fields every line should carry at the top level: `timestamp`, `level`,
//! `service` (api, router, connector, …), `instance_id`, and the fields of the enclosing spans (such as the
//! request's `correlation_id`) next to the event's own (`message_id`, `conversation_id`, `duration_ms`, `message`).

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The line format.
pub struct JsonLines {
    instance_id: String,
    process: &'static str,
}

impl JsonLines {
    /// Lines of this process, `instance_id` telling it from other processes of the same role; `process` is the
    /// `service` of lines no role module wrote (the process's role, or `chat4all` when it runs them all).
    pub fn new(instance_id: String, process: &'static str) -> Self {
        Self {
            instance_id,
            process,
        }
    }
}

/// The role a log line belongs to, from the module that wrote it; `fallback` for shared modules.
fn service_of(target: &str, fallback: &'static str) -> &'static str {
    if target.contains("::api")
        || target.contains("http_server")
        || target.starts_with("tower_http")
        || target.starts_with("axum")
    {
        "api"
    } else if target.contains("routing") || target.contains("roles::router") {
        "router"
    } else if target.contains("delivery")
        || target.contains("connector")
        || target.contains("connectors")
    {
        "connector"
    } else if target.contains("embedded") {
        "storage"
    } else {
        fallback
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::from(timestamp));
        line.insert(
            "level".into(),
            Value::from(event.metadata().level().as_str()),
        );
        line.insert(
            "service".into(),
            Value::from(service_of(event.metadata().target(), self.process)),
        );
        line.insert("instance_id".into(), Value::from(self.instance_id.as_str()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(span_fields);
                }
            }
        }
        event.record(&mut Fields(&mut line));
        line.insert("target".into(), Value::from(event.metadata().target()));
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use super::service_of;

    #[test]
    fn roles_follow_modules() {
        assert_eq!(service_of("chat4all_server::api::observe", "x"), "api");
        assert_eq!(
            service_of("chat4all_core::services::routing", "x"),
            "router"
        );
        assert_eq!(
            service_of("chat4all_core::services::delivery", "x"),
            "connector"
        );
        assert_eq!(service_of("chat4all_server::app", "chat4all"), "chat4all");
        assert_eq!(service_of("chat4all_kafka::groups", "router"), "router");
    }
}
