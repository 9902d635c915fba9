//! `GET /connections` and `GET /connections/{id}`. Holds no key: it never sees secrets.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use super::{connection_response, method_not_allowed, respond};
use crate::config::Settings;
use crate::domain::Connection;
use crate::http::{connection_id, json_response, principal, request_id};
use crate::input::{encode_cursor, parse_list_query};
use crate::problem::ApiError;
use crate::store::Connections;

pub struct ListHandler {
    /// Only the connections aggregate: a function holding no more than it uses links
    /// no other aggregate's DynamoDB code (see `runtime::connections`).
    pub store: Arc<dyn Connections>,
    pub settings: Settings,
}

impl ListHandler {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        respond(self.route(&request).await, &request_id)
    }

    async fn route(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::GET {
            return Err(method_not_allowed(request));
        }
        let owner = principal(request, self.settings.identity)?;
        let limit = self.settings.max_connections_per_owner;
        if is_collection(request) {
            let query = request.query_string_parameters();
            let query = parse_list_query(query.first("limit"), query.first("cursor"))?;
            let mut page =
                self.store.list(&owner, query.limit, query.after.as_ref()).await.map_err(|e| e.into_api("", limit))?;
            let now = crate::domain::now();
            page.items = page.items.into_iter().map(|c| c.with_status_at(now)).collect();
            let body = PageBody { items: &page.items, next_cursor: page.next.as_ref().map(encode_cursor) };
            return Ok(json_response(StatusCode::OK, &body));
        }
        let id = connection_id(request)?;
        let connection =
            self.store.get(&owner, &id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)?;
        Ok(connection_response(StatusCode::OK, &connection, None))
    }
}

/// The list response, serialised straight from the items (no intermediate JSON tree).
#[derive(serde::Serialize)]
pub struct PageBody<'a> {
    pub items: &'a [Connection],
    pub next_cursor: Option<String>,
}

fn is_collection(request: &Request) -> bool {
    let has_id = request.path_parameters_ref().is_some_and(|p| p.first("id").is_some());
    !has_id && request.uri().path().trim_end_matches('/').ends_with("/connections")
}
