//! The OpenAPI document: what the handlers' annotations say, completed by one pass with what operations share
//! (security schemes, the error responses that come from extractors and middleware, problem+json bodies).

use super::problem::ProblemBody;
use super::{
    admin, conversations, downloads, files, groups, identities, messages, ops, uploads, users,
};
use axum::http::StatusCode;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Header, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

/// Security scheme of the user endpoints: a user's access token.
const USER: &str = "bearer";
/// Security scheme of the `/admin` endpoints: the operator token.
const ADMIN: &str = "admin";

#[derive(OpenApi)]
#[openapi(
    info(title = "Chat4All", description = "One HTTP API in front of many messaging channels."),
    paths(
        users::register, users::token, users::lookup, users::find,
        conversations::create, conversations::list, conversations::read,
        groups::create, groups::get, groups::add_member, groups::remove_member, groups::promote,
        messages::send, messages::history, messages::get, messages::read,
        identities::link, identities::list, identities::unlink,
        files::upload, downloads::download, downloads::content,
        uploads::create_upload, uploads::put_chunk, uploads::upload_status, uploads::complete_upload,
        admin::set_fault, admin::list_dead_letters, admin::replay_dead_letters, admin::inject,
        ops::health, ops::live, ops::metrics, ops::openapi,
    ),
    components(schemas(ProblemBody)),
    modifiers(&Shared),
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of this api.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// Completes every operation with what it shares with others, so that handlers list only their own responses:
/// - a request body can be malformed (400) or over its limit (413), a query string or header malformed (400);
/// - a user endpoint needs a user's bearer token (401) and is rate limited per user (429); an admin endpoint
///   needs the admin token (401);
/// - every error response without a body of its own is a `Problem`; 429 and 503 say when to retry.
///
/// Every response carries `X-Correlation-ID`.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            USER,
            bearer(
                Some("JWT"),
                "A user's access token, from `POST /auth/token`.",
            ),
        );
        components.add_security_scheme(
            ADMIN,
            bearer(
                None,
                "The operator token: setting `admin-token`, else generated into `<data-dir>/admin-token`.",
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                complete(operation);
            }
        }
    }
}

fn bearer(format: Option<&str>, description: &str) -> SecurityScheme {
    let mut http = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(description));
    if let Some(format) = format {
        http = http.bearer_format(format);
    }
    SecurityScheme::Http(http.build())
}

fn complete(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let has_input = has_body
        || operation
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in != ParameterIn::Path);
    let (user, admin) = (requires(operation, USER), requires(operation, ADMIN));
    let responses = &mut operation.responses.responses;
    let mut declare = |status: StatusCode, description: &str| {
        responses
            .entry(status.as_str().to_owned())
            .or_insert_with(|| Response::new(description).into());
    };
    if has_input {
        declare(StatusCode::BAD_REQUEST, "A malformed request.");
    }
    if has_body {
        declare(StatusCode::PAYLOAD_TOO_LARGE, "The body is over its limit.");
    }
    if user {
        declare(StatusCode::UNAUTHORIZED, "No valid bearer token.");
        declare(
            StatusCode::TOO_MANY_REQUESTS,
            "Over the caller's request rate.",
        );
    }
    if admin {
        declare(StatusCode::UNAUTHORIZED, "No valid admin token.");
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response.headers.insert(
            "X-Correlation-ID".to_owned(),
            header(
                "The request's correlation id (the client's when sane, else a new one).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[A-Za-z0-9._-]{1,64}$")),
            ),
        );
        let Some(status) = status
            .parse()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
        else {
            continue;
        };
        if response.description.is_empty() {
            response.description = status.canonical_reason().unwrap_or_default().to_owned();
        }
        if !(status.is_client_error() || status.is_server_error()) || !response.content.is_empty() {
            continue;
        }
        response.content.insert(
            "application/problem+json".to_owned(),
            Content::new(Some(Ref::from_schema_name(ProblemBody::name()))),
        );
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response.headers.insert(
                "Retry-After".to_owned(),
                header(
                    "Seconds to wait before retrying.",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers.insert(
                "WWW-Authenticate".to_owned(),
                header("`Bearer`.", ObjectBuilder::new().schema_type(Type::String)),
            );
        }
    }
}

/// Whether every way to call `operation` needs the security scheme `scheme`.
fn requires(operation: &Operation, scheme: &str) -> bool {
    let needed = SecurityRequirement::new(scheme, Vec::<String>::new());
    operation
        .security
        .as_ref()
        .is_some_and(|ways| !ways.is_empty() && ways.iter().all(|way| *way == needed))
}

fn header(description: &str, schema: ObjectBuilder) -> Header {
    let mut header = Header::new(schema);
    header.description = Some(description.to_owned());
    header
}

#[cfg(test)]
mod tests {
    use super::openapi_document;
    use chat4all_core::services::conversations::{MAX_MEMBERS, MAX_NAME_CHARS};
    use chat4all_core::services::messaging::{MAX_CONTENT_BYTES, MAX_VALIDITY_SECS};
    use serde_json::{Value, json};

    fn document() -> Value {
        serde_json::to_value(openapi_document()).unwrap()
    }

    #[test]
    fn limits_are_the_ones_the_code_enforces() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let send = &schemas["SendMessageRequest"]["properties"];
        assert_eq!(send["content"]["maxLength"], json!(MAX_CONTENT_BYTES));
        assert_eq!(
            send["validity_seconds"]["maximum"],
            json!(MAX_VALIDITY_SECS)
        );
        let create = &schemas["CreateConversationRequest"]["properties"];
        assert_eq!(create["members"]["maxItems"], json!(MAX_MEMBERS));
        assert_eq!(create["name"]["maxLength"], json!(MAX_NAME_CHARS));
        assert_eq!(create["type"]["enum"], json!(["direct", "group"]));
    }

    #[test]
    fn every_error_is_a_problem_and_protected_operations_say_so() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                let schemes = operation["security"].to_string();
                if schemes == r#"[{"bearer":[]}]"# {
                    for status in ["401", "429"] {
                        assert!(
                            responses.contains_key(status),
                            "{method} {path}: no {status}"
                        );
                    }
                }
                if schemes.contains("admin") {
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
                if operation.get("requestBody").is_some() {
                    for status in ["400", "413"] {
                        assert!(
                            responses.contains_key(status),
                            "{method} {path}: no {status}"
                        );
                    }
                }
                for (status, response) in responses {
                    let problem =
                        &response["content"]["application/problem+json"]["schema"]["$ref"];
                    if status.starts_with('4') || (status.starts_with('5') && path != "/health") {
                        assert_eq!(
                            problem, "#/components/schemas/Problem",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
