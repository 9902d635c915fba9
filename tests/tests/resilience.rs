//! Races, faults and limits against the emulator: nothing lost, duplicated,
//! resurrected or half-written, and a clear answer every time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blackbox::api::{Api, AwsBackend, Call, Reply, test_settings};
use blackbox::emulator;
use blackbox::fake_bitbucket::*;
use connections::seal::KmsSealer;
use connections::store::DynamoStore;
use serde_json::json;

const RACERS: usize = 20;

fn token_body(fake: &FakeBitbucket, name: &str) -> serde_json::Value {
    json!({"name": name, "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN})
}

async fn setup() -> (Arc<Api>, AwsBackend, FakeBitbucket) {
    let fake = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    (Arc::new(api), aws, fake)
}

async fn items_with_prefix(aws: &AwsBackend, prefix: &str) -> Vec<String> {
    let scan = aws.dynamodb.scan().table_name(&aws.table).send().await.unwrap();
    scan.items()
        .iter()
        .filter_map(|item| item.get("sk").and_then(|v| v.as_s().ok()).cloned())
        .filter(|sk| sk.starts_with(prefix))
        .collect()
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    statuses
}

async fn race(api: &Arc<Api>, calls: Vec<Call>) -> Vec<Reply> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let api = api.clone();
            tokio::spawn(async move { api.send(call).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_of_one_name_make_exactly_one_connection() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let calls = (0..RACERS).map(|_| Call::post("/connections").user("alice").json(token_body(&fake, "Work"))).collect();
    let replies = race(&api, calls).await;
    let mut expected = vec![201];
    expected.extend(std::iter::repeat_n(409, RACERS - 1));
    assert_eq!(statuses(&replies), expected);
    assert_eq!(items_with_prefix(&aws, "CONN#").await.len(), 1);
    assert_eq!(items_with_prefix(&aws, "NAME#").await, vec!["NAME#work".to_owned()]);
    println!("race: {RACERS} concurrent adds of one name -> 1 created, {} duplicate_name", RACERS - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_with_one_etag_advance_the_version_once() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let item = format!("/connections/{}", created.json["id"].as_str().unwrap());
    let calls = (0..RACERS)
        .map(|n| {
            Call::patch(&item).user("alice").header("if-match", "\"1\"").json(json!({"name": format!("name-{n}")}))
        })
        .collect();
    let replies = race(&api, calls).await;
    let mut expected = vec![200];
    expected.extend(std::iter::repeat_n(412, RACERS - 1));
    assert_eq!(statuses(&replies), expected);
    let winner = replies.iter().find(|r| r.status == 200).unwrap();
    let now = api.send(Call::get(&item).user("alice")).await;
    assert_eq!(now.json["version"], 2);
    assert_eq!(now.json["name"], winner.json["name"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_an_edit_never_resurrects_the_connection() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let mut deleted = 0;
    for round in 0..10 {
        let created =
            api.send(Call::post("/connections").user("alice").json(token_body(&fake, &format!("r{round}")))).await;
        let item = format!("/connections/{}", created.json["id"].as_str().unwrap());
        let calls = vec![
            Call::patch(&item).user("alice").json(json!({"name": format!("renamed-{round}")})),
            Call::delete(&item).user("alice"),
        ];
        let replies = race(&api, calls).await;
        assert!([200, 412, 404].contains(&replies[0].status), "{}", replies[0].text);
        assert_eq!(replies[1].status, 204, "{}", replies[1].text);
        deleted += 1;
        let after = api.send(Call::get(&item).user("alice")).await;
        assert_eq!(after.status, 404, "round {round}: deleted, and it stays deleted");
    }
    assert_eq!(deleted, 10);
    assert!(items_with_prefix(&aws, "CONN#").await.is_empty());
    // Whichever way each race went, no name stays blocked by a deleted connection.
    for round in 0..10 {
        for name in [format!("r{round}"), format!("renamed-{round}")] {
            let reused = api.send(Call::post("/connections").user("alice").json(token_body(&fake, &name))).await;
            assert_eq!(reused.status, 201, "{name}: {}", reused.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_of_a_deleted_connections_name_make_exactly_one_connection() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "Work"))).await;
    let item = format!("/connections/{}", created.json["id"].as_str().unwrap());
    assert_eq!(api.send(Call::delete(&item).user("alice")).await.status, 204);
    let calls = (0..RACERS).map(|_| Call::post("/connections").user("alice").json(token_body(&fake, "work"))).collect();
    let replies = race(&api, calls).await;
    let mut expected = vec![201];
    expected.extend(std::iter::repeat_n(409, RACERS - 1));
    assert_eq!(statuses(&replies), expected);
    assert_eq!(items_with_prefix(&aws, "CONN#").await.len(), 1);
    let winner = replies.iter().find(|r| r.status == 201).unwrap();
    let reservation = aws
        .dynamodb
        .get_item()
        .table_name(&aws.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("USER#alice".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("NAME#work".into()))
        .send()
        .await
        .unwrap();
    let holder = reservation.item().and_then(|i| i.get("connection_id")).and_then(|v| v.as_s().ok()).cloned();
    assert_eq!(holder.as_deref(), winner.json["id"].as_str(), "the reservation names the survivor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renames_racing_to_one_name_leave_no_orphan_reservation() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, name))).await;
        ids.push(created.json["id"].as_str().unwrap().to_owned());
    }
    let calls = ids
        .iter()
        .map(|id| Call::patch(format!("/connections/{id}")).user("alice").json(json!({"name": "target"})))
        .collect();
    let replies = race(&api, calls).await;
    assert_eq!(statuses(&replies), vec![200, 409, 409, 409]);
    let mut names = items_with_prefix(&aws, "NAME#").await;
    names.sort();
    let winner = replies.iter().position(|r| r.status == 200).unwrap();
    let mut expected: Vec<String> = ["a", "b", "c", "d"].iter().map(|n| format!("NAME#{n}")).collect();
    expected[winner] = "NAME#target".into();
    expected.sort();
    assert_eq!(names, expected, "exactly one reservation per connection");
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_original_without_calling_anyone_again() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let call = || {
        Call::post("/connections")
            .user("alice")
            .header("idempotency-key", "3f1c-retry-key")
            .json(token_body(&fake, "work"))
    };
    let first = api.send(call()).await;
    assert_eq!(first.status, 201);
    let bitbucket_calls = fake.requests().len();
    let retry = api.send(call()).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.json["id"], first.json["id"]);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(fake.requests().len(), bitbucket_calls, "no second verification");
    assert_eq!(items_with_prefix(&aws, "CONN#").await.len(), 1);

    let different = api
        .send(
            Call::post("/connections")
                .user("alice")
                .header("idempotency-key", "3f1c-retry-key")
                .json(token_body(&fake, "other")),
        )
        .await;
    assert_eq!((different.status, different.code()), (422, "idempotency_key_reused"));
    let other_user = api
        .send(
            Call::post("/connections")
                .user("bob")
                .header("idempotency-key", "3f1c-retry-key")
                .json(token_body(&fake, "work")),
        )
        .await;
    assert_eq!(other_user.status, 201, "keys are per user");
    assert_ne!(other_user.json["id"], first.json["id"]);
    let bad_key = api
        .send(
            Call::post("/connections")
                .user("alice")
                .header("idempotency-key", "has space")
                .json(token_body(&fake, "x")),
        )
        .await;
    assert_eq!(bad_key.code(), "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_with_one_key_all_get_the_one_connection() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let calls = (0..RACERS)
        .map(|_| {
            Call::post("/connections")
                .user("alice")
                .header("idempotency-key", "same-key")
                .json(token_body(&fake, "work"))
        })
        .collect();
    let replies = race(&api, calls).await;
    assert!(replies.iter().all(|r| r.status == 201), "{:?}", statuses(&replies));
    let ids: std::collections::BTreeSet<&str> = replies.iter().map(|r| r.json["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(items_with_prefix(&aws, "CONN#").await.len(), 1);
}

#[tokio::test]
async fn the_per_user_limit_is_enforced() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let mut settings = test_settings();
    settings.max_connections_per_owner = 3;
    let (api, _aws) = Api::on_moto(settings).await;
    for n in 0..3 {
        assert_eq!(
            api.send(Call::post("/connections").user("alice").json(token_body(&fake, &format!("c{n}")))).await.status,
            201
        );
    }
    let over = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "c3"))).await;
    assert_eq!((over.status, over.code()), (409, "too_many_connections"));
    assert!(over.json["detail"].as_str().unwrap().contains('3'));
}

/// A stand-in AWS endpoint that fails every call in one way, counting attempts.
async fn failing_aws(mode: &'static str) -> (String, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match mode {
                "throttle" => (
                    axum::http::StatusCode::BAD_REQUEST,
                    [("x-amzn-errortype", "ProvisionedThroughputExceededException"), ("content-type", "application/x-amz-json-1.0")],
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"Rate of requests exceeds the allowed throughput."}"#,
                ),
                _ => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    (axum::http::StatusCode::OK, [("x-amzn-errortype", ""), ("content-type", "")], "")
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (endpoint, attempts)
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    endpoint
}

fn assert_retryable(reply: &Reply) {
    assert_eq!((reply.status, reply.code()), (503, "service_unavailable"), "{}", reply.text);
    assert!(reply.header("retry-after").is_some());
    assert!(!reply.text.to_ascii_lowercase().contains("dispatch"), "no SDK internals: {}", reply.text);
}

#[tokio::test]
async fn kms_down_means_503_and_nothing_stored() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let dynamodb = emulator::dynamodb().await;
    let table = emulator::create_table(&dynamodb).await;
    let dead_kms = aws_sdk_kms::Client::new(&emulator::sdk_config_at(&closed_port()).await);
    let api = Api::new(
        Arc::new(DynamoStore::new(dynamodb.clone(), table.clone())),
        Arc::new(KmsSealer::new(dead_kms, "key")),
        test_settings(),
    );
    let reply = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    assert_retryable(&reply);
    let scan = dynamodb.scan().table_name(&table).send().await.unwrap();
    let written: Vec<&str> = scan.items().iter().filter_map(|i| i.get("sk")?.as_s().ok().map(String::as_str)).collect();
    assert!(
        written.iter().all(|sk| sk.starts_with("RATE#")),
        "no connection, reservation or counter without its ciphertext: {written:?}"
    );
    println!("fault: KMS unreachable -> {} {}", reply.status, reply.code());
}

#[tokio::test]
async fn dynamodb_throttling_is_retried_then_answered_with_503() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (endpoint, attempts) = failing_aws("throttle").await;
    let throttled = aws_sdk_dynamodb::Client::new(&emulator::sdk_config_at(&endpoint).await);
    let kms = emulator::kms().await;
    let key = emulator::create_key(&kms).await;
    let api = Api::new(Arc::new(DynamoStore::new(throttled, "t")), Arc::new(KmsSealer::new(kms, key)), test_settings());
    let reply = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    assert_retryable(&reply);
    let list = api.send(Call::get("/connections").user("alice")).await;
    assert_retryable(&list);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2 * connections::aws::MAX_ATTEMPTS as usize,
        "standard retries, bounded"
    );
    println!(
        "fault: DynamoDB throttling -> {} {} after {} attempts per call",
        reply.status,
        reply.code(),
        connections::aws::MAX_ATTEMPTS
    );
}

#[tokio::test]
async fn a_hanging_dynamodb_is_cut_off_by_the_sdk_timeouts() {
    let _logs = blackbox::logs::guard();
    let (endpoint, _attempts) = failing_aws("hang").await;
    let hanging = aws_sdk_dynamodb::Client::new(&emulator::sdk_config_at(&endpoint).await);
    let dir = tempfile::tempdir().unwrap();
    let sealer = Arc::new(connections::seal::LocalSealer::open_or_create(&dir.path().join("k")).unwrap());
    let api = Api::new(Arc::new(DynamoStore::new(hanging, "t")), sealer, test_settings());
    let started = Instant::now();
    let reply = api.send(Call::get("/connections").user("alice")).await;
    let took = started.elapsed();
    assert_retryable(&reply);
    // The operation timeout bounds the wait far below the functions' 25 s Lambda timeout.
    assert!(took <= connections::aws::OPERATION_TIMEOUT + Duration::from_secs(2), "answered after {took:?}");
    println!("fault: DynamoDB hanging -> {} after {:.1} s", reply.status, took.as_secs_f64());
}

#[tokio::test]
async fn unreachable_dynamodb_on_list_and_delete_is_503() {
    let _logs = blackbox::logs::guard();
    let dead = aws_sdk_dynamodb::Client::new(&emulator::sdk_config_at(&closed_port()).await);
    let dir = tempfile::tempdir().unwrap();
    let sealer = Arc::new(connections::seal::LocalSealer::open_or_create(&dir.path().join("k")).unwrap());
    let api = Api::new(Arc::new(DynamoStore::new(dead, "t")), sealer, test_settings());
    assert_retryable(&api.send(Call::get("/connections").user("alice")).await);
    assert_retryable(&api.send(Call::delete("/connections/01934a6e-0000-7000-8000-000000000000").user("alice")).await);
}
