//! The AWS SDK's HTTP client, on the stack reqwest is built on: one HTTP stack in every function.
//!
//! Smithy's own client would bring a second connector, pool and TLS configuration (and
//! HTTP/2) beside reqwest, which Bitbucket needs: more code to load and relocate at every
//! cold start. This adapter hands the SDK's requests to hyper-util's client with
//! hyper-rustls, the layers under reqwest (without reqwest's own per-request layer: URL
//! parsing and body wrapping cost 44 k instructions an AWS call), trusting Amazon's roots
//! plus `AWS_CA_BUNDLE`, as the other AWS SDKs read it. What smithy's client did for the
//! SDK it does too: a connect timeout over DNS, TCP and TLS, connections the SDK can
//! poison after a transient error, and smithy's classification of network errors. It keeps that client reachable so
//! that start-up can open the connections the first request will use (`super::warm`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector as TcpConnector, capture_connection};

type Pool = Client<ConnectWithin<hyper_rustls::HttpsConnector<TcpConnector>>, SdkBody>;
/// A client, or why its configuration could not be built (an unreadable `AWS_CA_BUNDLE`).
type Built = Result<Pool, String>;

/// hyper clients for AWS endpoints, one per connect timeout (in practice one per
/// process: every SDK client shares the service's configuration), cloned cheaply.
#[derive(Debug, Default)]
pub struct AwsHttp {
    clients: Mutex<Vec<(Option<Duration>, Built)>>,
}

impl AwsHttp {
    /// The client, built on first use: a process that never calls AWS (the settings
    /// page) never builds its TLS configuration.
    fn client(&self, connect_timeout: Option<Duration>) -> Built {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = clients.iter().find(|(timeout, _)| *timeout == connect_timeout) {
            return client.clone();
        }
        let client = build(connect_timeout);
        clients.push((connect_timeout, client.clone()));
        client
    }
}

fn build(connect_timeout: Option<Duration>) -> Built {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::aws_client_config(&ca_bundle()?)?)
        // http:// only where an endpoint is configured so (an emulator).
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let connector = ConnectWithin { inner: tls, limit: connect_timeout };
    // The timer lets the pool drop connections idle past its 90 s, as smithy's client does.
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector))
}

/// The PEM bundle `AWS_CA_BUNDLE` names, if any.
fn ca_bundle() -> Result<Vec<Vec<u8>>, String> {
    match std::env::var_os("AWS_CA_BUNDLE").filter(|path| !path.is_empty()) {
        Some(path) => Ok(vec![std::fs::read(&path).map_err(|e| format!("AWS_CA_BUNDLE {}: {e}", path.display()))?]),
        None => Ok(Vec::new()),
    }
}

/// Whether `AWS_CA_BUNDLE`, if set, reads and parses, for start-up to refuse a bad one
/// at once rather than fail every call. Only the bundle: building the whole TLS
/// configuration here as well would double a quarter of a million start-up instructions.
pub fn check_trust() -> Result<(), String> {
    ca_bundle()?.iter().try_for_each(|pem| crate::tls::check_roots(pem))
}

/// The connect timeout over the whole connection (DNS, TCP and the TLS handshake), as
/// smithy's client applies it; hyper-util's own covers TCP alone.
#[derive(Clone, Debug)]
struct ConnectWithin<C> {
    inner: C,
    limit: Option<Duration>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for ConnectWithin<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (connecting, limit) = (self.inner.call(uri), self.limit);
        Box::pin(async move {
            match limit {
                Some(limit) => match tokio::time::timeout(limit, connecting).await {
                    Ok(connected) => connected.map_err(Into::into),
                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out").into()),
                },
                None => connecting.await.map_err(Into::into),
            }
        })
    }
}

/// What the SDK configuration holds: the process's `AwsHttp`.
#[derive(Clone, Debug)]
pub struct SdkHttpClient(pub Arc<AwsHttp>);

impl HttpClient for SdkHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            client: self.0.client(settings.connect_timeout()),
            read_timeout: settings.read_timeout(),
        })
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", None))
    }
}

#[derive(Debug)]
struct Connector {
    client: Built,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(error) => return HttpConnectorFuture::ready(Err(ConnectorError::user(error.clone().into()))),
        };
        let warm_up = request.headers().contains_key(super::warm::HEADER);
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into()))),
        };
        if warm_up {
            return HttpConnectorFuture::new(open_connection(client, request.into_parts().0.uri));
        }
        // The SDK closes a connection that answered a transient error (a 500, a throttle)
        // rather than send the retry down it again: it needs a handle to poison it.
        let captured = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || poisonable(&captured));
        }
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answer = client.request(request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, answer)
                    .await
                    .map_err(|elapsed| ConnectorError::timeout(elapsed.into()))?,
                None => answer.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn poisonable(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    captured.connection_metadata().as_ref()?;
    let captured = captured.clone();
    let poison = move || {
        if let Some(connection) = captured.connection_metadata().as_ref() {
            connection.poison();
        }
    };
    Some(ConnectionMetadata::builder().proxied(false).poison_fn(poison).build())
}

/// A warm-up (`super::warm`): an unsigned `GET /` to the call's endpoint, read to the
/// end so that the connection goes back to the pool; the call itself is not sent.
async fn open_connection(client: Pool, uri: http::Uri) -> Result<HttpResponse, ConnectorError> {
    let mut root = uri.into_parts();
    root.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    let uri = http::Uri::from_parts(root).map_err(|e| ConnectorError::user(e.into()))?;
    let request = http::Request::get(uri).body(SdkBody::empty()).map_err(|e| ConnectorError::user(e.into()))?;
    let response = client.request(request).await.map_err(classify)?;
    let kept = response.version() == http::Version::HTTP_11
        && !response
            .headers()
            .get(http::header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    response.into_body().collect().await.map_err(|e| ConnectorError::io(e.into()))?;
    if !kept {
        return Err(ConnectorError::user("warm-up: the endpoint closed the connection after its answer".into()));
    }
    Err(ConnectorError::user(Box::new(super::warm::Opened)))
}

/// As smithy's own client classifies hyper's errors: what failed to connect or broke
/// the connection may be retried, the rest is reported.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    let hyper = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<hyper::Error>());
    let io = std::iter::successors(std::error::Error::source(&error), |e| e.source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some());
    if hyper.is_some_and(hyper::Error::is_user) {
        ConnectorError::user(error.into())
    } else if error.is_connect() || io || hyper.is_some_and(|e| e.is_closed() || e.is_canceled()) {
        ConnectorError::io(error.into())
    } else if hyper.is_some_and(hyper::Error::is_incomplete_message) {
        ConnectorError::other(error.into(), Some(ErrorKind::TransientError))
    } else {
        ConnectorError::other(error.into(), None)
    }
}
