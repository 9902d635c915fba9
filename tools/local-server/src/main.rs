//! `connections-local`: the whole service in one process on loopback, for
//! `scripts/run` and the suites that drive it over HTTP.
//!
//! It stands where API Gateway and Lambda stand when deployed: the HTTP API's
//! routes (`connections::routes`) turned into payload format 2.0 events, and
//! Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`, what
//! `cargo lambda invoke`, the AWS SDK and the git helper call) for every function.
//! Each answer is whole before it is sent. (`cargo lambda watch` serves the same
//! routes from the workspace manifest, but up to version 1.9.2 it forwards a
//! function's answer while still reading it, and cuts answers over about 8 KB,
//! such as the page's script, now and then: docs/testing.md.)

mod functions;
mod gateway;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode};
use connections::config::Config;
use connections::handlers::web::WebConfig;
use connections::routes;
use functions::Functions;
use serde_json::Value;

/// API Gateway's HTTP API refuses larger requests itself.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
const INVOKE_PREFIX: &str = "/2015-03-31/functions/";

#[tokio::main]
async fn main() -> Result<(), String> {
    connections::runtime::init_logging();
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse::<u16>().map_err(|_| format!("PORT must be a port number, not {port:?}"))?,
        Err(_) => 9000,
    };
    // What `cargo lambda watch` is given in the workspace manifest: the embedded
    // store under .local/ and the development identity (x-dev-user).
    let defaults = [("CONNECTIONS_BACKEND", "embedded"), ("CONNECTIONS_LOCAL_MODE", "1")];
    let lookup = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| defaults.iter().find(|(name, _)| *name == key).map(|(_, v)| (*v).to_owned()))
    };
    let config = Config::from_lookup(lookup)?;
    let web = WebConfig::from_env()?;
    let functions: &'static Functions = Box::leak(Box::new(Functions::build(config, &web).await?));
    // Loopback only: the development identity lets any caller say who they are.
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| format!("{address}: {e}"))?;
    tracing::info!(%address, "listening");
    let app = axum::Router::new().fallback(answer).with_state(Server { functions, port });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
struct Server {
    functions: &'static Functions,
    port: u16,
}

async fn answer(
    State(Server { functions, port }): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Err(refusal) =
        from_this_machine(&parts.headers, port, invoked_function(&parts.method, parts.uri.path()).is_some())
    {
        tracing::warn!(path = parts.uri.path(), refusal, "refused a request from elsewhere");
        return gateway::plain(StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#);
    }
    let request_id = uuid::Uuid::now_v7().to_string();
    let Ok(body) = to_bytes(body, MAX_REQUEST_BYTES).await else {
        return gateway::plain(StatusCode::PAYLOAD_TOO_LARGE, r#"{"message":"Request Entity Too Large"}"#);
    };
    let path = parts.uri.path();
    let (function, response) = if let Some(name) = invoked_function(&parts.method, path) {
        (name.to_owned(), invoke(functions, name, &body, &request_id).await)
    } else if let Some(route) = routes::find(parts.method.as_str(), path) {
        let event = gateway::event(&route, &parts, peer.ip(), &body, &request_id);
        let response = match functions.invoke(route.route.function, event, &request_id).await {
            Ok(answer) => gateway::response(&answer),
            Err(failure) => {
                tracing::error!(function = route.route.function, failure = ?failure, "the function failed");
                gateway::plain(StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"Internal Server Error"}"#)
            }
        };
        (route.route.function.to_owned(), response)
    } else {
        ("-".to_owned(), gateway::plain(StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#))
    };
    tracing::info!(
        method = %parts.method,
        path,
        function,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "answered"
    );
    response
}

/// Loopback alone does not keep other sites out: a page elsewhere can send a browser's
/// simple POST here, and a name re-pointed at 127.0.0.1 (DNS rebinding) makes its pages
/// same-origin. So the `Host` must name this machine; a browser's `Origin`, when sent,
/// must be this server's own (the settings page); and the Invoke API, whose events name
/// their own caller and which only SDKs and the CLI use, takes no browser request at all.
fn from_this_machine(headers: &axum::http::HeaderMap, port: u16, invoke: bool) -> Result<(), &'static str> {
    let ours =
        |authority: &str| ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| authority == format!("{host}:{port}"));
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if !text("host").is_some_and(ours) {
        return Err("Host is not this machine");
    }
    match text("origin") {
        Some(_) if invoke => Err("a browser may not use the Invoke API"),
        Some(origin) if !origin.strip_prefix("http://").is_some_and(ours) => Err("Origin is another site"),
        _ => Ok(()),
    }
}

/// The function an Invoke API call names (a name or a function ARN).
fn invoked_function<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    let name = path.strip_prefix(INVOKE_PREFIX)?.strip_suffix("/invocations")?;
    let name = match name.strip_prefix("arn:") {
        // arn:aws:lambda:region:account:function:name[:qualifier]
        Some(_) => name.split(':').nth(6)?,
        None => name,
    };
    (method == Method::POST).then_some(name)
}

async fn invoke(functions: &'static Functions, name: &str, payload: &[u8], request_id: &str) -> Response<Body> {
    let payload: Value = if payload.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(payload) {
            Ok(payload) => payload,
            Err(_) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "Could not parse request body into json",
                );
            }
        }
    };
    let (status, body, function_error) = match functions.invoke(name, payload, request_id).await {
        Ok(answer) => (StatusCode::OK, answer, false),
        Err(failure) => match failure.body() {
            Some(body) => (StatusCode::OK, body, true),
            None => {
                let message = format!("Function not found: {name}");
                return lambda_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &message);
            }
        },
    };
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    if function_error {
        headers.insert("x-amz-function-error", HeaderValue::from_static("Unhandled"));
    }
    response
}

/// Lambda's own error answer: the type in `x-amzn-errortype`, as the SDK reads it.
fn lambda_error(status: StatusCode, error_type: &'static str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"Type": "User", "message": message});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_and_its_own_page_are_served() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(from_this_machine(&headers(&[("host", "127.0.0.1:9000")]), 9000, false).is_ok());
        assert!(from_this_machine(&headers(&[("host", "localhost:9000")]), 9000, true).is_ok());
        let page = [("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:9000")];
        assert!(from_this_machine(&headers(&page), 9000, false).is_ok(), "the settings page itself");
        assert!(from_this_machine(&headers(&page), 9000, true).is_err(), "no browser on the Invoke API");
        for refused in [
            vec![("host", "rebound.example:9000")],
            vec![("host", "127.0.0.1:9001")],
            vec![],
            vec![("host", "127.0.0.1:9000"), ("origin", "https://evil.example")],
            vec![("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:9000.evil.example")],
        ] {
            assert!(from_this_machine(&headers(&refused), 9000, false).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn invocations_name_a_function_or_its_arn() {
        let post = Method::POST;
        assert_eq!(invoked_function(&post, "/2015-03-31/functions/credentials/invocations"), Some("credentials"));
        let arn = "/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:recheck:live/invocations";
        assert_eq!(invoked_function(&post, arn), Some("recheck"));
        assert_eq!(invoked_function(&Method::GET, "/2015-03-31/functions/list/invocations"), None);
        assert_eq!(invoked_function(&post, "/connections"), None);
    }
}
