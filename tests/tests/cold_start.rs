//! A cold start as Lambda runs it: the function's own binary, a Runtime API, and the
//! emulator behind one relay per service (separate endpoints, as DynamoDB's and KMS's
//! are on AWS). Start-up opens the connections the first request uses, and only those.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blackbox::emulator;
use blackbox::fake_bitbucket::{API_TOKEN_ALL_SCOPES, API_TOKEN_EMAIL, FakeBitbucket};
use blackbox::local::{build_functions, repository_root};
use blackbox::relay::CountingRelay;
use blackbox::runtime_api::RuntimeApi;
use serde_json::{Value, json};

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Backends {
    table: String,
    key: String,
    dynamodb: CountingRelay,
    kms: CountingRelay,
}

impl Backends {
    async fn start() -> Self {
        let upstream = emulator::endpoint();
        Self {
            table: emulator::create_table(&emulator::dynamodb().await).await,
            key: emulator::create_key(&emulator::kms().await).await,
            dynamodb: CountingRelay::start(&upstream).await,
            kms: CountingRelay::start(&upstream).await,
        }
    }

    /// `(DynamoDB, KMS)` connections opened so far.
    fn connections(&self) -> (usize, usize) {
        (self.dynamodb.connections(), self.kms.connections())
    }
}

/// The binary `name`, started as Lambda starts it, with the emulator as its AWS.
fn start_with(name: &str, runtime: &RuntimeApi, backends: &Backends, extra: &[(&str, &str)]) -> Function {
    let binary = repository_root().join("target/debug").join(name);
    let child = Command::new(binary)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", runtime.address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", name),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL_DYNAMODB", &backends.dynamodb.url()),
            ("AWS_ENDPOINT_URL_KMS", &backends.kms.url()),
            ("CONNECTIONS_BACKEND", "aws"),
            ("CONNECTIONS_TABLE", &backends.table),
            ("CONNECTIONS_KEY_ID", &backends.key),
            ("BITBUCKET_ALLOWED_PRIVATE", "127.0.0.0/8"),
            ("BITBUCKET_ALLOWED_HTTP", "127.0.0.1"),
            ("RUST_LOG", "info"),
        ])
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the function's binary (built by build_functions)");
    Function(child)
}

/// The binary `name` on a Runtime API of its own, once it has asked for its first event.
async fn started(name: &str, backends: &Backends, extra: &[(&str, &str)]) -> (RuntimeApi, Function) {
    let runtime = RuntimeApi::start().await;
    let function = start_with(name, &runtime, backends, extra);
    runtime.started(Duration::from_secs(20)).await;
    (runtime, function)
}

/// Whether the binary `name` exits with an error before asking for an event.
async fn refuses_to_start(name: &str, backends: &Backends, extra: &[(&str, &str)]) -> bool {
    let runtime = RuntimeApi::start().await;
    let mut function = start_with(name, &runtime, backends, extra);
    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if let Ok(Some(status)) = function.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .expect("the wait ran");
    exited.is_some_and(|status| !status.success())
}

fn event(function: &str, file: &str, body: Option<Value>) -> Value {
    let path = repository_root().join("functions").join(function).join("events").join(file);
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the example event")).expect("JSON");
    if let Some(body) = body {
        event["body"] = Value::String(body.to_string());
    }
    event
}

fn status(answer: &(String, Value)) -> u64 {
    assert_eq!(answer.0, "response", "{answer:?}");
    answer.1["statusCode"].as_u64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_opens_the_connections_the_first_request_uses_and_no_others() {
    tokio::task::spawn_blocking(build_functions).await.expect("the build ran");

    // list never seals or opens a secret: it connects to DynamoDB only, and its first
    // request finds that connection open.
    let backends = Backends::start().await;
    let (runtime, _list) = started("list", &backends, &[]).await;
    assert_eq!(backends.connections(), (1, 0), "list opened DynamoDB's connection before its first request");
    assert_eq!(backends.dynamodb.requests(), ["GET /"], "the warm-up calls no DynamoDB operation");
    assert_eq!(status(&runtime.invoke(event("list", "list.json", None)).await), 200);
    assert_eq!(backends.connections(), (1, 0), "the first request used the connection start-up opened");
    assert_eq!(backends.dynamodb.requests().len(), 2);

    // add seals the secret: it opens DynamoDB's and KMS's connections while it starts, and
    // its first request (verify, seal with KMS, write) opens none.
    let bitbucket = FakeBitbucket::start().await;
    let backends = Backends::start().await;
    let (runtime, _add) = started("add", &backends, &[]).await;
    assert_eq!(backends.connections(), (1, 1), "add opened DynamoDB's and KMS's connections before its first request");
    assert_eq!(backends.kms.requests(), ["GET /"], "the warm-up calls no KMS operation");
    let body = json!({"name": "cold", "url": bitbucket.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES});
    let answer = runtime.invoke(event("add", "create.json", Some(body))).await;
    assert_eq!(status(&answer), 201, "{answer:?}");
    assert_eq!(backends.connections(), (1, 1), "the first request used the connections start-up opened");
    assert!(backends.kms.requests().len() >= 2, "the secret was sealed through KMS: {:?}", backends.kms.requests());

    // edit's usual request is a rename: it opens only DynamoDB's connection at start.
    let backends_before = backends.connections();
    let (_, _edit) = started("edit", &backends, &[]).await;
    let (dynamodb, kms) = backends.connections();
    assert_eq!(
        (dynamodb - backends_before.0, kms - backends_before.1),
        (1, 0),
        "edit connects to KMS only when it needs it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_opening_at_start_the_first_request_connects_and_bad_aws_settings_stop_start_up() {
    tokio::task::spawn_blocking(build_functions).await.expect("the build ran");
    let backends = Backends::start().await;

    let (runtime, _list) = started("list", &backends, &[("CONNECTIONS_OPEN_AT_START", "0")]).await;
    assert_eq!(backends.connections(), (0, 0), "CONNECTIONS_OPEN_AT_START=0 opens nothing at start");
    assert_eq!(status(&runtime.invoke(event("list", "list.json", None)).await), 200);
    assert_eq!(backends.connections(), (1, 0), "the first request opened its own connection");

    // An AWS_CA_BUNDLE that cannot be read, or no role keys in the environment, is
    // refused at start, not at every call.
    assert!(
        refuses_to_start("add", &backends, &[("AWS_CA_BUNDLE", "/nonexistent/ca.pem")]).await,
        "add stops with an error on an unreadable AWS_CA_BUNDLE"
    );
    assert!(
        refuses_to_start("list", &backends, &[("AWS_ACCESS_KEY_ID", "")]).await,
        "list stops with an error without the role's keys"
    );
}
