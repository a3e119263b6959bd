//! One JSON object per log line, with the fields every line should carry at the top level: `timestamp`, `level`,
//! `service` (api, router, connector, …), `instance_id`, and the fields of the enclosing spans (such as the
//! request's `correlation_id`) next to the event's own (`message_id`, `conversation_id`, `duration_ms`, `message`).

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

/// Appends an event's fields to a line as `,"name":value`, leaving out the names its spans already gave.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    taken: &'a [&'static str],
}

impl Fields<'_> {
    fn field(&mut self, field: &Field, value: impl serde::Serialize) {
        if self.taken.contains(&field.name()) {
            return;
        }
        self.line.push(b',');
        json(self.line, field.name());
        self.line.push(b':');
        json(self.line, value);
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Appends `value` as JSON (strings quoted and escaped); a value that cannot be written leaves `null`.
fn json(line: &mut Vec<u8>, value: impl serde::Serialize) {
    let mark = line.len();
    if serde_json::to_writer(&mut *line, &value).is_err() {
        line.truncate(mark);
        line.extend_from_slice(b"null");
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    /// Writes the line field by field, the spans' fields spliced in as the JSON they were formatted to when
    /// recorded: no map is built and nothing is parsed back (this runs twice for every message).
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Vec::with_capacity(384);
        line.extend_from_slice(b"{\"timestamp\":");
        json(&mut line, &timestamp);
        line.extend_from_slice(b",\"level\":");
        json(&mut line, event.metadata().level().as_str());
        line.extend_from_slice(b",\"service\":");
        json(
            &mut line,
            service_of(event.metadata().target(), self.process),
        );
        line.extend_from_slice(b",\"instance_id\":");
        json(&mut line, &self.instance_id);
        let mut taken = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                let inner = fields.trim().trim_start_matches('{').trim_end_matches('}');
                if !inner.is_empty() {
                    line.push(b',');
                    line.extend_from_slice(inner.as_bytes());
                    taken.extend(span.metadata().fields().iter().map(|f| f.name()));
                }
            }
        }
        event.record(&mut Fields {
            line: &mut line,
            taken: &taken,
        });
        line.extend_from_slice(b",\"target\":");
        json(&mut line, event.metadata().target());
        line.push(b'}');
        // Every byte came from serde_json or from JSON that the span formatter wrote, so it is UTF-8.
        writeln!(writer, "{}", String::from_utf8_lossy(&line))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{JsonLines, service_of};
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::JsonFields;

    /// Log lines kept in memory, in this module's format: for tests of what the lines say.
    #[derive(Clone, Default)]
    pub(crate) struct CapturedLog(Arc<Mutex<Vec<u8>>>);

    impl Write for CapturedLog {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl CapturedLog {
        /// A subscriber writing JSON lines of instance `host-1` here.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
            let writer = self.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines::new("host-1".into(), "chat4all"))
                .finish()
        }

        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Each line, parsed (a line that is not JSON fails the test).
        pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
            self.text()
                .lines()
                .map(|l| serde_json::from_str(l).expect("each line is JSON"))
                .collect()
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_its_spans_fields_once() {
        let captured = CapturedLog::default();
        tracing::subscriber::with_default(captured.subscriber(), || {
            let span =
                tracing::info_span!("request", correlation_id = "c-1", path = "/v1/messages");
            span.in_scope(|| {
                tracing::info!(
                    correlation_id = "ignored",
                    seq = 7u64,
                    ok = true,
                    detail = %"a \"quoted\" line\nbreak",
                    "request completed"
                );
            });
            tracing::warn!(ratio = 0.5, "no span");
        });
        let (output, lines) = (captured.text(), captured.lines());
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(first["correlation_id"], "c-1", "the span's field wins");
        assert_eq!(
            output
                .lines()
                .next()
                .unwrap()
                .matches("correlation_id")
                .count(),
            1
        );
        assert_eq!(first["path"], "/v1/messages");
        assert_eq!(first["seq"], 7);
        assert_eq!(first["ok"], true);
        assert_eq!(first["detail"], "a \"quoted\" line\nbreak");
        assert_eq!(first["message"], "request completed");
        assert_eq!(
            (&first["level"], &first["instance_id"]),
            (&"INFO".into(), &"host-1".into())
        );
        assert!(first["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        let second = &lines[1];
        assert_eq!(
            (&second["level"], &second["ratio"]),
            (&"WARN".into(), &0.5.into())
        );
        assert!(second.get("correlation_id").is_none());
        assert!(
            second["target"]
                .as_str()
                .is_some_and(|t| t.contains("json_lines"))
        );
    }

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
