//! An HTTP proxy in front of the emulator that counts the connections clients open
//! to it and the requests they send, for tests about connection reuse. It keeps
//! client connections open as AWS endpoints do (moto closes every one after its
//! answer) and forwards each request on a connection of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

#[derive(Clone)]
pub struct CountingRelay {
    pub address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Forward {
    upstream: String,
    client: reqwest::Client,
    requests: Arc<Mutex<Vec<String>>>,
}

impl CountingRelay {
    /// Forwards to `upstream` (`http://host:port`) from a free loopback port.
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let relay = Self {
            address: listener.local_addr().expect("its address"),
            connections: Arc::default(),
            requests: Arc::default(),
        };
        let forward = Forward {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .no_proxy()
                .tls_backend_preconfigured(connections::tls::bitbucket_client_config(&[]).expect("TLS settings"))
                .build()
                .expect("a client"),
            requests: relay.requests.clone(),
        };
        let app = Router::new().fallback(forward_request).with_state(forward);
        let connections = relay.connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        relay
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests seen so far, as `GET /`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

async fn forward_request(State(forward): State<Forward>, request: Request) -> Result<Response, StatusCode> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    forward.requests.lock().expect("not poisoned").push(format!("{} {}", parts.method, parts.uri.path()));
    // As DynamoDB answers it (start-up opens connections with it), without moto's delay.
    if parts.method == axum::http::Method::GET && parts.uri.path() == "/" {
        return Ok(Response::new(Body::from("healthy: dynamodb.us-east-1.amazonaws.com")));
    }
    let body: Bytes = axum::body::to_bytes(body, 8 << 20).await.map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut headers = parts.headers;
    headers.remove("host");
    let answer = forward
        .client
        .request(parts.method, format!("{}{path}", forward.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "connection" && name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    response.body(Body::from(body)).map_err(|_| StatusCode::BAD_GATEWAY)
}
