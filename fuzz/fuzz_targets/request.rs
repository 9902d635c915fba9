//! Request → response without leaving the process: body parsing and validation
//! for every body-taking route, and the list/get/delete handlers (embedded store)
//! for any path, query and header. Any panic or 5xx is a crash.

#![no_main]

use std::sync::{Arc, OnceLock};

use connections::config::Settings;
use connections::handlers::{DeleteHandler, ListHandler};
use connections::http::json_body;
use connections::input::{parse_create, parse_list_query, parse_patch};
use connections::store::EmbeddedStore;
use connections::domain::ServerUrl;
use libfuzzer_sys::fuzz_target;

struct Handlers {
    list: ListHandler,
    delete: DeleteHandler,
    runtime: tokio::runtime::Runtime,
}

fn handlers() -> &'static Handlers {
    static HANDLERS: OnceLock<Handlers> = OnceLock::new();
    HANDLERS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("connections-fuzz-{}", std::process::id()));
        let store = Arc::new(EmbeddedStore::open(&dir.join("c.sqlite3")).expect("store"));
        Handlers {
            list: ListHandler { store: store.clone(), settings: Settings::default() },
            delete: DeleteHandler { store, settings: Settings::default() },
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
        }
    })
}

/// API Gateway hands over paths and query strings percent-encoded; raw control
/// characters never reach a function (lambda_http itself panics on them).
fn encoded(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || keep.contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn event(method: &str, path: &str, query: &str, header: &str, body: &str) -> String {
    let path = encoded(path, b"/-._~");
    let query = encoded(query, b"=&-._~");
    serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": "application/json", "if-match": header.replace(|c: char| c.is_control(), "")},
        "requestContext": {
            "accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d", "requestId": "r",
            "routeKey": "$default", "stage": "$default", "time": "t", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.1.1.1", "userAgent": "f"},
            "authorizer": {"jwt": {"claims": {"sub": "fuzz"}, "scopes": null}}
        },
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (path, query, header, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let _ = ServerUrl::parse(path);
    let _ = parse_list_query(Some(query), Some(header));

    let handlers = handlers();
    for method in ["POST", "PATCH"] {
        let Ok(request) = lambda_http::request::from_str(&event(method, "/connections", "", header, body)) else { continue };
        match json_body(&request, 16 * 1024) {
            Ok(map) => {
                if let Err(error) = parse_create(&map) {
                    assert!(error.to_response().status().as_u16() < 500);
                }
                if let Err(error) = parse_patch(&map) {
                    assert!(error.to_response().status().as_u16() < 500);
                }
            }
            Err(error) => assert!(error.to_response().status().as_u16() < 500),
        }
    }
    let path = format!("/connections/{}", path.replace(['?', '#'], ""));
    for (method, target) in [("GET", "/connections"), ("GET", path.as_str()), ("DELETE", path.as_str())] {
        let Ok(request) = lambda_http::request::from_str(&event(method, target, query, header, "")) else { continue };
        let response = handlers.runtime.block_on(async {
            if method == "DELETE" { handlers.delete.handle(request).await } else { handlers.list.handle(request).await }
        });
        assert!(response.status().as_u16() < 500, "{method} {target}: {}", response.status());
    }
});
