//! The AWS SDK's HTTP connector (`connections::aws`): what the network does to a call
//! is classified as smithy's own client classifies it, so the SDK's retries apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An endpoint that takes each request and hangs up without answering; how many
/// connections it was asked for.
async fn hanging_up() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
        }
    });
    (format!("http://{address}"), accepted)
}

#[tokio::test]
async fn a_connection_lost_before_the_answer_is_retried_then_reported() {
    let (endpoint, accepted) = hanging_up().await;
    let client = aws_sdk_dynamodb::Client::new(&blackbox::emulator::sdk_config_at(&endpoint).await);
    let key = AttributeValue::S("k".into());
    let result = client.get_item().table_name("t").key("pk", key.clone()).key("sk", key).send().await;
    assert!(matches!(result, Err(SdkError::DispatchFailure(_))), "{result:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        connections::aws::MAX_ATTEMPTS as usize,
        "a broken connection is a transient failure: every attempt was made"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let client =
        aws_sdk_dynamodb::Client::new(&blackbox::emulator::sdk_config_at(&format!("http://127.0.0.1:{port}")).await);
    let key = AttributeValue::S("k".into());
    let result = client.get_item().table_name("t").key("pk", key.clone()).key("sk", key).send().await;
    let Err(SdkError::DispatchFailure(failure)) = result else { panic!("a dispatch failure: {result:?}") };
    assert!(failure.is_io(), "connection refused is an I/O failure, which the SDK retries: {failure:?}");
}

/// An endpoint that answers every request 500 on a connection it keeps open; how
/// many connections it was asked for and how many requests it answered.
async fn failing() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let (accepted, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (connections, requests) = (accepted.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 8192];
                while let Ok(1..) = stream.read(&mut buffer).await {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/x-amz-json-1.0\r\n\
                                  content-length: 2\r\n\r\n{}";
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (format!("http://{address}"), accepted, answered)
}

#[tokio::test]
async fn a_retry_after_a_server_error_goes_out_on_a_new_connection() {
    let (endpoint, connections, requests) = failing().await;
    let client = aws_sdk_dynamodb::Client::new(&blackbox::emulator::sdk_config_at(&endpoint).await);
    let key = AttributeValue::S("k".into());
    let result = client.get_item().table_name("t").key("pk", key.clone()).key("sk", key).send().await;
    assert!(matches!(result, Err(SdkError::ServiceError(_))), "{result:?}");
    let attempts = connections::aws::MAX_ATTEMPTS as usize;
    assert_eq!(requests.load(Ordering::SeqCst), attempts, "a 500 is retried");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        attempts,
        "the SDK closes a connection that answered a transient error; each retry opens its own"
    );
}
