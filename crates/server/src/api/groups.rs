//! `/v1/groups`: create and read groups, add, remove and promote members. A group is a conversation of type
//! group, so its history, sending and files go through the conversation endpoints unchanged.

use super::extract::{ApiJson, AuthUser, Correlation};
use super::problem::ApiResult;
use super::schema::Id;
use super::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chat4all_core::ids::UserId;
use chat4all_core::model::Group;
use chat4all_core::services::groups::{Action, NewGroup, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Counter of membership changes, by kind.
const CHANGES: &str = "group_membership_changes_total";
/// Every `change` label of [`CHANGES`].
const CHANGE_KINDS: [&str; 5] = ["joined", "left", "removed", "promoted", "handed_over"];

/// Group creation request.
#[derive(Deserialize, ToSchema)]
pub struct CreateGroupRequest {
    /// Display name (trimmed, not blank).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Free text (trimmed).
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// User ids of the other members; the caller is always a member and the first admin.
    #[schema(value_type = Option<Vec<Id>>)]
    initial_members: Option<Vec<String>>,
    /// What older clients send for `initial_members`; both lists are merged when both are given.
    #[schema(value_type = Option<Vec<Id>>)]
    member_ids: Option<Vec<String>>,
}

/// A member to add.
#[derive(Deserialize, ToSchema)]
pub struct AddMemberRequest {
    /// A registered user's id.
    #[schema(value_type = Id)]
    user_id: String,
}

/// A group: a conversation of type group (`group_id` = `conversation_id`) with admins and a member cap.
#[derive(Serialize, ToSchema)]
pub struct GroupView {
    group_id: String,
    conversation_id: String,
    name: Option<String>,
    description: Option<String>,
    /// Oldest member first.
    member_ids: Vec<String>,
    admin_ids: Vec<String>,
    max_members: u32,
    created_by: String,
    created_at: i64,
}

impl From<Group> for GroupView {
    fn from(g: Group) -> Self {
        let c = g.conversation;
        Self {
            group_id: c.conversation_id.to_string(),
            conversation_id: c.conversation_id.into(),
            name: c.name,
            description: g.description,
            member_ids: c.members.into_iter().map(Into::into).collect(),
            admin_ids: g.admins.into_iter().map(Into::into).collect(),
            max_members: g.max_members,
            created_by: c.created_by.into(),
            created_at: c.created_at,
        }
    }
}

/// Creates a group with the caller as its first admin.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroupRequest,
    security(("bearer" = [])),
    responses((status = 201, body = GroupView),
        (status = 400, description = "Malformed JSON, a blank name, or an unknown member."),
        (status = 422, description = "More members than a group may have.")))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    ApiJson(request): ApiJson<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let members = request.initial_members.into_iter().flatten();
    let request = NewGroup {
        name: Some(request.name),
        description: request.description,
        members: members
            .chain(request.member_ids.into_iter().flatten())
            .collect(),
    };
    let group = state.groups.create(&caller, request).await?;
    tracing::info!(%correlation_id, group_id = %group.conversation.conversation_id,
        members = group.conversation.members.len(), "group created");
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// A group, for its members.
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Group id")),
    responses((status = 200, body = GroupView),
        (status = 404, description = "No such group, or one the caller is not in.")))]
pub async fn get(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<GroupView>> {
    Ok(Json(state.groups.get(&caller, &id).await?.into()))
}

/// Adds a member (admins only); adding a member again changes nothing.
#[utoipa::path(post, path = "/v1/groups/{id}/members", tag = "groups", request_body = AddMemberRequest,
    security(("bearer" = [])),
    params(("id" = Id, Path, description = "Group id")),
    responses((status = 200, body = GroupView),
        (status = 400, description = "An unknown user."),
        (status = 403, description = "The caller is not an admin."),
        (status = 404, description = "No such group, or one the caller is not in."),
        (status = 409, description = "The group is full.")))]
pub async fn add_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AddMemberRequest>,
) -> ApiResult<Json<GroupView>> {
    let user = UserId::parse(request.user_id)?;
    let outcome = change(&state, &caller, &id, Action::Add(user), &correlation_id).await?;
    Ok(Json(outcome.group.into()))
}

/// Removes a member (admins), or leaves (any member, the creator included). When the last admin leaves, the
/// oldest remaining member becomes admin.
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{user_id}", tag = "groups", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Group id"), ("user_id" = Id, Path, description = "The member")),
    responses((status = 204, description = "Removed."),
        (status = 400, description = "The user id is malformed."),
        (status = 403, description = "The caller is not an admin, or the member is the group's creator."),
        (status = 404, description = "No such group, one the caller is not in, or the user is not a member.")))]
pub async fn remove_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = UserId::parse(user_id)?;
    change(&state, &caller, &id, Action::Remove(user), &correlation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a member admin (admins only); promoting an admin again changes nothing.
#[utoipa::path(put, path = "/v1/groups/{id}/admins/{user_id}", tag = "groups", security(("bearer" = [])),
    params(("id" = Id, Path, description = "Group id"), ("user_id" = Id, Path, description = "The member")),
    responses((status = 200, body = GroupView),
        (status = 400, description = "The user id is malformed."),
        (status = 403, description = "The caller is not an admin."),
        (status = 404, description = "No such group, or one the caller is not in."),
        (status = 422, description = "The user is not a member.")))]
pub async fn promote(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Correlation(correlation_id): Correlation,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<GroupView>> {
    let user = UserId::parse(user_id)?;
    let outcome = change(&state, &caller, &id, Action::Promote(user), &correlation_id).await?;
    Ok(Json(outcome.group.into()))
}

/// Applies a membership change, then counts and logs what actually changed.
async fn change(
    state: &AppState,
    caller: &UserId,
    id: &str,
    action: Action,
    correlation_id: &chat4all_core::ids::CorrelationId,
) -> ApiResult<Outcome> {
    let outcome = state.groups.change(caller, id, action.clone()).await?;
    if !outcome.changed {
        return Ok(outcome);
    }
    let (kind, user) = match &action {
        Action::Add(user) => ("joined", user),
        Action::Remove(user) if user == caller => ("left", user),
        Action::Remove(user) => ("removed", user),
        Action::Promote(user) => ("promoted", user),
    };
    metrics::counter!(CHANGES, "service" => "api", "change" => kind).increment(1);
    tracing::info!(%correlation_id, group_id = id, user_id = %user, by = %caller, change = kind, "group membership changed");
    if let Some(admin) = &outcome.handed_over_to {
        metrics::counter!(CHANGES, "service" => "api", "change" => "handed_over").increment(1);
        tracing::info!(%correlation_id, group_id = id, user_id = %admin, "last admin left; admin handed over");
    }
    Ok(outcome)
}

/// Registers the membership change counter at zero, for every kind of change.
pub fn register_metrics() {
    for kind in CHANGE_KINDS {
        metrics::counter!(CHANGES, "service" => "api", "change" => kind).absolute(0);
    }
}
