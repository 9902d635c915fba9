//! The request path without backends: what a handler costs beyond its I/O.

use std::sync::Arc;

use async_trait::async_trait;
use connections::config::Settings;
use connections::credential::Capabilities;
use connections::domain::{
    Account, Connection, ConnectionId, CredentialType, LastUsed, NewConnection, Owner, Provider, Status, now,
};
use connections::handlers::ListHandler;
use connections::handlers::list::PageBody;
use connections::http::json_body;
use connections::input::parse_create;
use connections::seal::Sealed;
use connections::store::{
    Announced, Claims, Connections, Documents, Due, DueAt, DuePage, Expected, Flow, Idempotency, IdempotencyRecord,
    OauthFlows, Page, Schedule, Slots, StoreError, TokenLeases,
};
use connections::verify::Verification;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn connection(n: usize) -> Connection {
    let scopes: Vec<String> = [
        "read:repository:bitbucket",
        "write:repository:bitbucket",
        "read:pullrequest:bitbucket",
        "write:pullrequest:bitbucket",
    ]
    .map(String::from)
    .to_vec();
    let verification = Verification {
        provider: Provider::BitbucketCloud,
        credential_type: CredentialType::ApiToken,
        account: Account::new(Some("{4f6d1a2c-8e0b}"), None, Some("J Doe"), Some("jdoe")),
        capabilities: Capabilities::from_cloud_scopes(CredentialType::ApiToken, &scopes),
        scopes,
        warnings: Vec::new(),
        git_username: Some("x-bitbucket-api-token-auth".into()),
    };
    let name = format!("connection {n}");
    let id = ConnectionId::new();
    let new = NewConnection {
        id: &id,
        name: &name,
        url: &connections::domain::ServerUrl::parse("https://api.bitbucket.org/2.0").expect("a URL"),
        username: Some(&connections::username::Username::parse("jdoe@example.com").expect("a login")),
        resource: None,
        expires_at: None,
    };
    Connection::verified(new, verification, now())
}

/// Answers instantly from memory: only the handler's own work is measured.
struct Instant(Vec<Connection>);

#[async_trait]
impl Connections for Instant {
    async fn create(
        &self,
        _: &Owner,
        _: &Connection,
        _: &Sealed,
        _: usize,
        _: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get(&self, _: &Owner, _: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        Ok(self.0.first().cloned())
    }
    async fn get_sealed(&self, _: &Owner, _: &ConnectionId) -> Result<Option<(Connection, Sealed)>, StoreError> {
        Ok(None)
    }
    async fn list(&self, _: &Owner, limit: usize, _: Option<&ConnectionId>) -> Result<Page, StoreError> {
        Ok(Page { items: self.0.iter().take(limit).cloned().collect(), next: None })
    }
    async fn update(&self, _: &Owner, _: &Connection, _: &Connection, _: Option<&Sealed>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: &Owner, _: &ConnectionId, _: Expected<'_>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn record_use(&self, _: &Owner, _: &ConnectionId, _: &LastUsed) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Idempotency for Instant {
    async fn idempotency_record(&self, _: &Owner, _: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl Schedule for Instant {
    async fn due_one(&self, _: &Owner, _: &ConnectionId) -> Result<Option<Due>, StoreError> {
        Ok(None)
    }
    async fn lease(&self, _: &Owner, _: &str, _: i64, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn due(&self, _: i64, _: usize, _: Option<&str>) -> Result<DuePage, StoreError> {
        Ok(DuePage::default())
    }
    async fn record_check(
        &self,
        _: &Owner,
        _: &Connection,
        _: &Connection,
        _: Status,
        _: DueAt,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn mark_announced(&self, _: &Owner, _: Announced<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Documents for Instant {
    async fn read_document(&self, _: &Owner, _: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(None)
    }
    async fn write_document(&self, _: &Owner, _: &str, _: &str, _: Option<u64>, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[async_trait]
impl Slots for Instant {
    async fn read_slots(&self, _: &Owner, _: &str) -> Result<Claims, StoreError> {
        Ok(Claims::new())
    }
    async fn claim_slot(
        &self,
        _: &Owner,
        _: &str,
        _: u32,
        _: i64,
        _: i64,
        _: i64,
    ) -> Result<Result<(), Claims>, StoreError> {
        Ok(Ok(()))
    }
}

#[async_trait]
impl OauthFlows for Instant {
    async fn begin_flow(&self, _: &Owner, _: &str, _: &Flow) -> Result<(), StoreError> {
        Ok(())
    }
    async fn take_flow(&self, _: &Owner, _: &str, _: i64) -> Result<Option<Flow>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl TokenLeases for Instant {
    async fn take_token_lease(
        &self,
        _: &Owner,
        _: &ConnectionId,
        _: &Sealed,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn store_tokens(&self, _: &Owner, _: &ConnectionId, _: &Sealed, _: &Sealed) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn token_state(&self, _: &Owner, _: &ConnectionId) -> Result<Option<(Sealed, Option<i64>)>, StoreError> {
        Ok(None)
    }
    async fn release_token_lease(&self, _: &Owner, _: &ConnectionId, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn event(method: &str, path: &str, id: Option<&str>, body: Option<serde_json::Value>) -> String {
    let mut event = json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d", "requestId": "r",
            "routeKey": format!("{method} {path}"), "stage": "$default", "time": "t", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.1.1.1", "userAgent": "b"},
            "authorizer": {"jwt": {"claims": {"sub": "alice"}, "scopes": null}}
        },
        "isBase64Encoded": false
    });
    if let Some(id) = id {
        event["pathParameters"] = json!({"id": id});
    }
    if let Some(body) = body {
        event["body"] = json!(body.to_string());
    }
    event.to_string()
}

fn benches(c: &mut Criterion) {
    let create = event(
        "POST",
        "/connections",
        None,
        Some(
            json!({"name": "work", "url": "https://api.bitbucket.org/2.0", "username": "jdoe@example.com", "password": "ATATT-token"}),
        ),
    );
    c.bench_function("create: decode event + parse + validate", |b| {
        b.iter(|| {
            let request = lambda_http::request::from_str(&create).unwrap();
            parse_create(&json_body(&request, 16 * 1024).unwrap()).unwrap()
        })
    });
    let invalid = event("POST", "/connections", None, Some(json!({"name": "", "username": 3})));
    c.bench_function("create: decode event + parse + problem response", |b| {
        b.iter(|| {
            let request = lambda_http::request::from_str(&invalid).unwrap();
            let error = parse_create(&json_body(&request, 16 * 1024).unwrap()).unwrap_err();
            error.to_response()
        })
    });

    let page: Vec<Connection> = (0..100).map(connection).collect();
    c.bench_function("serialise a page of 100 connections", |b| {
        b.iter(|| serde_json::to_string(&PageBody { items: &page, next_cursor: None }).unwrap())
    });

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let handler = ListHandler { store: Arc::new(Instant(page.clone())), settings: Settings::default() };
    let id = page[0].id.clone();
    let get = event("GET", &format!("/connections/{id}"), Some(&id), None);
    c.bench_function("handler: GET /connections/{id} without backends", |b| {
        b.iter(|| runtime.block_on(handler.handle(lambda_http::request::from_str(&get).unwrap())))
    });
    let list = event("GET", "/connections", None, None);
    c.bench_function("handler: GET /connections (50 items) without backends", |b| {
        b.iter(|| runtime.block_on(handler.handle(lambda_http::request::from_str(&list).unwrap())))
    });
}

criterion_group!(pure_path, benches);
criterion_main!(pure_path);
