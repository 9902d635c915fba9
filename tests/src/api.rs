//! Drives the handlers the way API Gateway would: HTTP API payload 2.0
//! events with the JWT authorizer's claims, routed by the same route table.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use connections::config::Settings;
use connections::handlers::{AddHandler, BrowseHandler, CredentialsHandler, DeleteHandler, EditHandler, ListHandler};
use connections::http::Identity;
use connections::seal::{KmsSealer, LocalSealer, Sealer};
use connections::store::{ConnectionStore, DynamoStore, EmbeddedStore};
use connections::verify::Verifier;
use connections::verify::client::{ClientSettings, LazyHttp};
use connections::verify::net::NetPolicy;
use lambda_http::Body;
use lambda_http::http::HeaderMap;
use serde_json::{Value, json};

use crate::emulator;

/// Settings for tests: the loopback fake Bitbucket is allowed, timeouts are short,
/// and the real Bitbucket's name is pinned to loopback so no test ever sends a
/// DNS query or a packet beyond this machine.
pub fn test_settings() -> Settings {
    Settings {
        identity: Identity::Authorizer,
        bitbucket: ClientSettings {
            policy: NetPolicy::parse("127.0.0.0/8").unwrap().with_plain_http("127.0.0.1").unwrap(),
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(1500),
            deadline: Duration::from_millis(3000),
            extra_roots_pem: Vec::new(),
            static_hosts: hermetic_hosts(),
        },
        // The per-owner limit has its own test; races and suites verify far more often.
        verifications_per_minute: 10_000,
        ..Settings::default()
    }
}

/// `api.bitbucket.org` and `bitbucket.org` answered as 127.0.0.1, where nothing listens on 443.
pub fn hermetic_hosts() -> Vec<(String, std::net::IpAddr)> {
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    vec![("api.bitbucket.org".into(), loopback), ("bitbucket.org".into(), loopback)]
}

pub struct Api {
    pub add: AddHandler,
    pub list: ListHandler,
    pub edit: EditHandler,
    pub delete: DeleteHandler,
    pub browse: BrowseHandler,
    pub credentials: CredentialsHandler,
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
}

/// The AWS resources behind an `Api` on moto.
pub struct AwsBackend {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub table: String,
    pub key_id: String,
}

impl Api {
    pub fn new(store: Arc<dyn ConnectionStore>, sealer: Arc<dyn Sealer>, settings: Settings) -> Self {
        let verifier = Verifier::new(&settings.bitbucket).expect("verifier");
        let keeper = || settings.token_keeper(store.clone(), sealer.clone());
        Self {
            add: AddHandler::new(store.clone(), sealer.clone(), verifier.clone(), settings.clone()),
            list: ListHandler { store: store.clone(), settings: settings.clone() },
            edit: EditHandler {
                store: store.clone(),
                sealer: sealer.clone(),
                verifier,
                settings: settings.clone(),
                keeper: keeper(),
            },
            delete: DeleteHandler { store: store.clone(), settings: settings.clone() },
            browse: BrowseHandler {
                store: store.clone(),
                http: LazyHttp::new(&settings.bitbucket),
                settings: settings.clone(),
                keeper: keeper(),
            },
            credentials: CredentialsHandler::new(store.clone(), sealer.clone(), settings.clone()),
            store,
            sealer,
        }
    }

    /// DynamoDB + KMS adapters on the moto server.
    pub async fn on_moto(settings: Settings) -> (Self, AwsBackend) {
        let dynamodb = emulator::dynamodb().await;
        let kms = emulator::kms().await;
        let table = emulator::create_table(&dynamodb).await;
        let key_id = emulator::create_key(&kms).await;
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), table.clone()));
        let sealer = Arc::new(KmsSealer::new(kms.clone(), key_id.clone()));
        (Self::new(store, sealer, settings), AwsBackend { dynamodb, kms, table, key_id })
    }

    /// SQLite + AES-GCM adapters in `dir`.
    pub fn embedded(dir: &Path, settings: Settings) -> Self {
        let store = Arc::new(EmbeddedStore::open(&dir.join("connections.sqlite3")).expect("open sqlite"));
        let sealer = Arc::new(LocalSealer::open_or_create(&dir.join("secret.key")).expect("key file"));
        Self::new(store, sealer, settings)
    }

    /// Invokes the credentials function as a worker would (no HTTP, no JWT).
    pub async fn invoke_credentials(&self, event: Value) -> Value {
        self.credentials.handle(event, "req-test-1").await
    }

    pub async fn send(&self, request: Call) -> Reply {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let method = request.method.as_str();
        let (route_key, id) = match (method, segments.as_slice()) {
            ("POST" | "GET", ["connections"]) => (format!("{method} /connections"), None),
            ("POST", ["oauth", "flows"]) => ("POST /oauth/flows".to_owned(), None),
            ("POST", ["oauth", "callbacks"]) => ("POST /oauth/callbacks".to_owned(), None),
            ("GET" | "PATCH" | "DELETE", ["connections", id]) => (format!("{method} /connections/{{id}}"), Some(*id)),
            ("POST", ["connections", id, "verify"]) => ("POST /connections/{id}/verify".to_owned(), Some(*id)),
            ("GET", ["connections", id, "workspaces"]) => ("GET /connections/{id}/workspaces".to_owned(), Some(*id)),
            ("GET", ["connections", id, "repositories"]) => {
                ("GET /connections/{id}/repositories".to_owned(), Some(*id))
            }
            ("GET", ["connections", id, "repositories", _, _, "branches"]) => {
                ("GET /connections/{id}/repositories/{workspace}/{repo}/branches".to_owned(), Some(*id))
            }
            _ => panic!("no route for {method} {}", request.path),
        };
        let event = request.event(&route_key, id);
        let http_request = lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway v2 event");
        let response = match route_key.as_str() {
            "POST /connections" | "POST /oauth/flows" | "POST /oauth/callbacks" => self.add.handle(http_request).await,
            "GET /connections" | "GET /connections/{id}" => self.list.handle(http_request).await,
            "PATCH /connections/{id}" | "POST /connections/{id}/verify" => self.edit.handle(http_request).await,
            key if key.starts_with("GET /connections/{id}/") => self.browse.handle(http_request).await,
            _ => self.delete.handle(http_request).await,
        };
        Reply::from(response)
    }
}

/// A request as a client sends it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub user: Option<String>,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub source_ip: String,
}

impl Call {
    fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            user: None,
            headers: Vec::new(),
            query: Vec::new(),
            body: None,
            source_ip: "203.0.113.7".into(),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new("PATCH", path)
    }
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }

    /// Signed in as `sub` (the JWT authorizer's claim).
    pub fn user(mut self, sub: &str) -> Self {
        self.user = Some(sub.into());
        self
    }

    /// The address API Gateway saw the request come from.
    pub fn from_ip(mut self, ip: &str) -> Self {
        ip.clone_into(&mut self.source_ip);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn json(self, body: Value) -> Self {
        self.raw_body("application/json", body.to_string().into_bytes())
    }

    pub fn raw_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.retain(|(n, _)| n != "content-type");
        self.headers.push(("content-type".into(), content_type.into()));
        self.body = Some(body);
        self
    }

    fn event(&self, route_key: &str, id: Option<&str>) -> Value {
        let headers: serde_json::Map<String, Value> =
            self.headers.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
        let raw_query =
            self.query.iter().map(|(n, v)| format!("{}={}", urlencode(n), urlencode(v))).collect::<Vec<_>>().join("&");
        let query: serde_json::Map<String, Value> =
            self.query.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect();
        let authorizer = match &self.user {
            Some(sub) => {
                json!({"jwt": {"claims": {"sub": sub, "iss": "https://issuer.example", "aud": "connections"}, "scopes": null}})
            }
            None => Value::Null,
        };
        let (body, encoded) = match &self.body {
            None => (Value::Null, false),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Value::String(text.into()), false),
                Err(_) => (Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)), true),
            },
        };
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api1234567",
                "domainName": "api1234567.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "api1234567",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": self.source_ip, "userAgent": "tests"},
                "requestId": "req-test-1",
                "routeKey": route_key,
                "stage": "$default",
                "time": "28/Nov/2026:14:00:00 +0000",
                "timeEpoch": 1795874400000u64
            },
            "body": body,
            "isBase64Encoded": encoded
        });
        if !authorizer.is_null() {
            event["requestContext"]["authorizer"] = authorizer;
        }
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        if let Some(id) = id {
            event["pathParameters"] = json!({"id": id});
            let segments: Vec<&str> = self.path.trim_matches('/').split('/').collect();
            if let ["connections", _, "repositories", workspace, repo, "branches"] = segments.as_slice() {
                event["pathParameters"]["workspace"] = json!(workspace);
                event["pathParameters"]["repo"] = json!(repo);
            }
        }
        event
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A handler's answer, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `code`, for error answers.
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
}

impl From<lambda_http::Response<Body>> for Reply {
    fn from(response: lambda_http::Response<Body>) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = match response.into_body() {
            Body::Text(text) => text,
            Body::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, headers, text, json }
    }
}
