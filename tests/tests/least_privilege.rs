//! The IAM in `infra/template.yaml` grants each function exactly the DynamoDB, KMS,
//! EventBridge and SQS actions its code performs: every scenario runs each function's
//! handler on clients that record the actions they send (transactions count as the
//! actions they contain), and the recording must equal the role's grants. The recheck's
//! queue-reading actions are the event source mapping's, granted to the role and never
//! called by the code: they are left out of the comparison by name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::operation::{
    delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput, query::QueryInput,
    transact_write_items::TransactWriteItemsInput, update_item::UpdateItemInput,
};
use aws_sdk_eventbridge::operation::put_events::PutEventsInput;
use aws_sdk_kms::operation::{decrypt::DecryptInput, encrypt::EncryptInput, generate_data_key::GenerateDataKeyInput};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueInput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use blackbox::api::{Api, Call, test_settings};
use blackbox::emulator;
use blackbox::fake_bitbucket::*;
use blackbox::oauth_flow;
use connections::config::RecheckSettings;
use connections::config::Settings;
use connections::events::EventBridgeEvents;
use connections::handlers::{
    AddHandler, BrowseHandler, CredentialsHandler, DeleteHandler, EditHandler, ListHandler, RecheckHandler,
};
use connections::oauth::{ClientsLoader, OauthSource, TokenKeeper};
use connections::seal::KmsSealer;
use connections::store::DynamoStore;
use connections::verify::Verifier;
use connections::verify::client::LazyHttp;
use serde_json::json;

/// One AWS call as IAM authorizes it: the action, the resource named symbolically
/// (`scripts/lib/authz.py` resolves it against the template) and, for KMS, the
/// encryption context's keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AwsCall {
    action: String,
    resource: &'static str,
    context_keys: Vec<String>,
}

type Actions = Arc<Mutex<BTreeSet<AwsCall>>>;

#[derive(Debug, Clone)]
struct Recorder(Actions);

fn context_keys(context: Option<&std::collections::HashMap<String, String>>) -> Vec<String> {
    let mut keys: Vec<String> = context.into_iter().flat_map(|c| c.keys().cloned()).collect();
    keys.sort();
    keys
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "least-privilege-recorder"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let input = context.input();
        let mut actions = self.0.lock().unwrap();
        let mut add = |action: &str, resource: &'static str, context_keys: Vec<String>| {
            actions.insert(AwsCall { action: action.to_owned(), resource, context_keys });
        };
        if input.downcast_ref::<GetItemInput>().is_some() {
            add("dynamodb:GetItem", "table", Vec::new());
        } else if let Some(query) = input.downcast_ref::<QueryInput>() {
            let resource = if query.index_name() == Some("due") { "table/index/due" } else { "table" };
            add("dynamodb:Query", resource, Vec::new());
        } else if input.downcast_ref::<PutItemInput>().is_some() {
            add("dynamodb:PutItem", "table", Vec::new());
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            add("dynamodb:UpdateItem", "table", Vec::new());
        } else if input.downcast_ref::<DeleteItemInput>().is_some() {
            add("dynamodb:DeleteItem", "table", Vec::new());
        } else if let Some(transaction) = input.downcast_ref::<TransactWriteItemsInput>() {
            for item in transaction.transact_items() {
                if item.put().is_some() {
                    add("dynamodb:PutItem", "table", Vec::new());
                }
                if item.update().is_some() {
                    add("dynamodb:UpdateItem", "table", Vec::new());
                }
                if item.delete().is_some() {
                    add("dynamodb:DeleteItem", "table", Vec::new());
                }
                if item.condition_check().is_some() {
                    add("dynamodb:ConditionCheckItem", "table", Vec::new());
                }
            }
        } else if input.downcast_ref::<SendMessageBatchInput>().is_some() {
            add("sqs:SendMessage", "recheck-queue", Vec::new());
        } else if input.downcast_ref::<PutEventsInput>().is_some() {
            add("events:PutEvents", "event-bus", Vec::new());
        } else if let Some(generate) = input.downcast_ref::<GenerateDataKeyInput>() {
            add("kms:GenerateDataKey", "sealing-key", context_keys(generate.encryption_context()));
        } else if let Some(encrypt) = input.downcast_ref::<EncryptInput>() {
            add("kms:Encrypt", "sealing-key", context_keys(encrypt.encryption_context()));
        } else if let Some(decrypt) = input.downcast_ref::<DecryptInput>() {
            add("kms:Decrypt", "sealing-key", context_keys(decrypt.encryption_context()));
        } else if input.downcast_ref::<GetSecretValueInput>().is_some() {
            add("secretsmanager:GetSecretValue", "oauth-clients", Vec::new());
        } else {
            add("unrecognised operation", "unknown", Vec::new());
        }
        Ok(())
    }
}

/// What Lambda's event source mapping does with the recheck role to hand it queued
/// batches: granted, never called by the function's code.
const EVENT_SOURCE_MAPPING: [&str; 4] =
    ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"];

/// The actions the template grants each function's role (DynamoDB, KMS, EventBridge, SQS,
/// Secrets Manager); with `oauth`, also the policies only "Connect with Bitbucket" adds.
fn granted(oauth: bool) -> BTreeMap<&'static str, BTreeSet<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let resources = &template["Resources"];
    let mut by_role: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut collect = |role: String, document: &serde_yaml_ng::Value| {
        for statement in document["Statement"].as_sequence().unwrap() {
            let actions = match &statement["Action"] {
                serde_yaml_ng::Value::String(one) => vec![one.clone()],
                many => many.as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
            };
            by_role.entry(role.clone()).or_default().extend(
                actions
                    .into_iter()
                    .filter(|a| {
                        ["dynamodb:", "kms:", "events:", "sqs:", "secretsmanager:"].iter().any(|p| a.starts_with(p))
                    })
                    .filter(|a| !EVENT_SOURCE_MAPPING.contains(&a.as_str())),
            );
        }
    };
    for (name, resource) in resources.as_mapping().unwrap() {
        let name = name.as_str().unwrap().to_owned();
        let is_policy = resource["Type"].as_str().is_some_and(|t| t.starts_with("AWS::IAM::"));
        match resource["Condition"].as_str() {
            None => {}
            _ if !is_policy => {}
            Some("HasOauth") if oauth => {}
            Some("HasOauth") => continue,
            Some(other) => panic!("{name}: a policy under the condition {other}, which this test does not model"),
        }
        match resource["Type"].as_str() {
            Some("AWS::IAM::Role") => {
                for policy in resource["Properties"]["Policies"].as_sequence().into_iter().flatten() {
                    collect(name.clone(), &policy["PolicyDocument"]);
                }
            }
            Some("AWS::IAM::RolePolicy") => {
                let role = match &resource["Properties"]["RoleName"] {
                    serde_yaml_ng::Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                    other => other.as_str().unwrap().to_owned(),
                };
                collect(role, &resource["Properties"]["PolicyDocument"]);
            }
            Some("AWS::IAM::Policy") => {
                for role in resource["Properties"]["Roles"].as_sequence().unwrap() {
                    let role = match role {
                        serde_yaml_ng::Value::Tagged(tagged) => tagged.value.as_str().unwrap().to_owned(),
                        other => other.as_str().unwrap().to_owned(),
                    };
                    collect(role, &resource["Properties"]["PolicyDocument"]);
                }
            }
            _ => {}
        }
    }
    [
        ("add", "AddRole"),
        ("list", "ListRole"),
        ("edit", "EditRole"),
        ("delete", "DeleteRole"),
        ("browse", "BrowseRole"),
        ("credentials", "CredentialsRole"),
        ("recheck", "RecheckRole"),
        ("web", "WebRole"),
    ]
    .into_iter()
    .map(|(function, role)| (function, by_role.remove(role).unwrap_or_default()))
    .collect()
}

struct Recorded {
    actions: Actions,
    store: Arc<DynamoStore>,
    sealer: Arc<KmsSealer>,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

async fn recorded(table: &str, key: &str) -> Recorded {
    let sdk = emulator::sdk_config_at(&emulator::endpoint()).await;
    let actions: Actions = Arc::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(Recorder(actions.clone())).build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk).interceptor(Recorder(actions.clone())).build(),
    );
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&sdk).interceptor(Recorder(actions.clone())).build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk).interceptor(Recorder(actions.clone())).build(),
    );
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(Recorder(actions.clone())).build(),
    );
    Recorded {
        actions,
        store: Arc::new(DynamoStore::new(dynamodb, table)),
        sealer: Arc::new(KmsSealer::new(kms, key)),
        events,
        sqs,
        secrets,
    }
}

#[tokio::test]
async fn each_role_grants_exactly_what_its_function_calls() {
    let fake = FakeBitbucket::start().await;
    let dynamodb = emulator::dynamodb().await;
    let table = emulator::create_table(&dynamodb).await;
    let key = emulator::create_key(&emulator::kms().await).await;
    let settings = test_settings();
    let verifier = Verifier::new(&settings.bitbucket).unwrap();
    let (add, list, edit, delete) = (
        recorded(&table, &key).await,
        recorded(&table, &key).await,
        recorded(&table, &key).await,
        recorded(&table, &key).await,
    );
    // Each handler alone on its own recording clients, as in its own Lambda function.
    let mut api = Api::new(add.store.clone(), add.sealer.clone(), settings.clone());
    api.add = AddHandler::new(add.store.clone(), add.sealer.clone(), verifier.clone(), settings.clone());
    api.list = ListHandler { store: list.store.clone(), settings: settings.clone() };
    let keeper = |r: &Recorded| settings.token_keeper(r.store.clone(), r.sealer.clone());
    api.edit = EditHandler {
        store: edit.store.clone(),
        sealer: edit.sealer.clone(),
        verifier,
        settings: settings.clone(),
        keeper: keeper(&edit),
    };
    api.delete = DeleteHandler { store: delete.store.clone(), settings: settings.clone() };
    let (browse, credentials, recheck) =
        (recorded(&table, &key).await, recorded(&table, &key).await, recorded(&table, &key).await);
    api.browse = BrowseHandler {
        store: browse.store.clone(),
        http: LazyHttp::new(&settings.bitbucket),
        settings: settings.clone(),
        keeper: keeper(&browse),
    };
    api.credentials = CredentialsHandler::new(credentials.store.clone(), credentials.sealer.clone(), settings.clone());
    let rechecker = RecheckHandler {
        store: recheck.store.clone(),
        verifier: Verifier::new(&settings.bitbucket).unwrap(),
        events: Arc::new(EventBridgeEvents::new(recheck.events.clone(), "default")),
        settings: RecheckSettings { interval: std::time::Duration::ZERO, ..RecheckSettings::default() },
        circuits: Default::default(),
        keeper: keeper(&recheck),
    };

    let body = |name: &str| json!({"name": name, "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let created =
        api.send(Call::post("/connections").user("alice").header("idempotency-key", "k1").json(body("a"))).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        api.send(Call::post("/connections").user("alice").header("idempotency-key", "k1").json(body("a"))).await.status,
        201
    );
    let item = format!("/connections/{}", created.json["id"].as_str().unwrap());
    assert_eq!(api.send(Call::get("/connections").user("alice")).await.status, 200);
    assert_eq!(api.send(Call::get(&item).user("alice")).await.status, 200);
    assert_eq!(api.send(Call::patch(&item).user("alice").json(json!({"name": "b"}))).await.status, 200);
    assert_eq!(api.send(Call::patch(&item).user("alice").json(json!({"password": API_TOKEN}))).await.status, 200);
    assert_eq!(api.send(Call::patch(&item).user("alice").json(json!({"url": fake.url("cloud")}))).await.status, 200);
    assert_eq!(api.send(Call::post(format!("{item}/verify")).user("alice")).await.status, 200);
    assert_eq!(api.send(Call::delete(&item).user("alice")).await.status, 204);
    // A deleted connection's name reservation stays behind; reusing the name takes it over.
    let again = api.send(Call::post("/connections").user("alice").json(body("b"))).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let other = api.send(Call::post("/connections").user("alice").json(body("c"))).await;
    assert_eq!(
        api.send(Call::delete(format!("/connections/{}", again.json["id"].as_str().unwrap())).user("alice"))
            .await
            .status,
        204
    );
    let other = format!("/connections/{}", other.json["id"].as_str().unwrap());
    assert_eq!(api.send(Call::patch(&other).user("alice").json(json!({"name": "b"}))).await.status, 200);

    // Using a connection: the pickers, a worker's credentials and report, and a recheck run
    // that re-verifies it, finds it revoked and announces that.
    let all = json!({"name": "browse", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES});
    let used_one = api.send(Call::post("/connections").user("alice").json(all)).await;
    let used_id = used_one.json["id"].as_str().unwrap().to_owned();
    let path = |rest: &str| format!("/connections/{used_id}/{rest}");
    assert_eq!(api.send(Call::get(path("workspaces")).user("alice")).await.status, 200);
    assert_eq!(api.send(Call::get(path("repositories")).user("alice").query("workspace", "acme")).await.status, 200);
    let get = json!({"action": "get", "owner": "alice", "connection_id": used_id, "purpose": "git"});
    assert_eq!(api.invoke_credentials(get).await["ok"], true);
    fake.revoke(API_TOKEN_ALL_SCOPES);
    let revoked = api.send(Call::get(path("workspaces")).user("alice")).await;
    assert_eq!(revoked.code(), "invalid_credentials", "browsing found the revocation and marked it");
    let report = rechecker.run(std::time::Instant::now() + std::time::Duration::from_secs(30)).await;
    assert_eq!(report.events, 1, "the recheck run announced it: {report:?}");
    assert!(report.verified >= 1, "and re-verified the others: {report:?}");
    // Deployed, the schedule's run plans and workers check queued batches.
    let queued = api.send(Call::post("/connections").user("alice").json(body("queued"))).await;
    assert_eq!(queued.status, 201, "{}", queued.text);
    let setup = aws_sdk_sqs::Client::new(&emulator::sdk_config_at(&emulator::endpoint()).await);
    let queue_url = setup.create_queue().queue_name(format!("{table}-work")).send().await.unwrap().queue_url.unwrap();
    let queue = connections::work::SqsQueue::new(recheck.sqs.clone(), queue_url.clone());
    let soon = || std::time::Instant::now() + std::time::Duration::from_secs(30);
    assert!(rechecker.plan(&queue, soon()).await.queued >= 1);
    let received = setup.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
    let records: Vec<_> = received
        .messages()
        .iter()
        .map(|m| json!({"eventSource": "aws:sqs", "body": m.body().unwrap_or_default()}))
        .collect();
    let batch = rechecker.handle(&json!({"Records": records}), Some(&queue), soon()).await;
    assert!(batch["verified"].as_u64().unwrap_or(0) >= 1, "a worker checked the queued connection: {batch}");
    let other_id = other.trim_start_matches("/connections/");
    let issued = api
        .invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": other_id, "purpose": "api"}))
        .await;
    let reported = json!({"action": "report", "owner": "alice", "connection_id": other_id, "version": issued["version"], "report_token": issued["report_token"], "outcome": "unauthorized"});
    assert_eq!(api.invoke_credentials(reported).await["ok"], true);

    let oauth_calls = oauth_calls(&table, &key, &fake, &settings).await;
    let calls: BTreeMap<&str, BTreeSet<AwsCall>> = [
        ("add", &add),
        ("list", &list),
        ("edit", &edit),
        ("delete", &delete),
        ("browse", &browse),
        ("credentials", &credentials),
        ("recheck", &recheck),
    ]
    .into_iter()
    .map(|(function, recorded)| (function, recorded.actions.lock().unwrap().clone()))
    .chain([("web", BTreeSet::new())])
    .collect();
    let used = actions(&calls);
    for (function, actions) in &used {
        println!("{function}: {}", actions.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    assert_eq!(used, granted(false), "template grants (right) must equal the calls each function makes (left)");
    let mut with_oauth = used.clone();
    for (function, extra) in actions(&oauth_calls) {
        println!("{function}, with OAuth: {}", extra.iter().cloned().collect::<Vec<_>>().join(", "));
        with_oauth.entry(function).or_default().extend(extra);
    }
    assert_eq!(with_oauth, granted(true), "with OAuth, the grants (right) must equal the calls (left)");
    authorized_on_aws(&calls, &oauth_calls);
}

/// The calls "Connect with Bitbucket" adds, each function on its own recording clients
/// with the client list in Secrets Manager: a round trip (add), and a refresh where each
/// function uses an OAuth connection (credentials, browse, a re-verify, the recheck).
async fn oauth_calls(
    table: &str,
    key: &str,
    fake: &FakeBitbucket,
    settings: &Settings,
) -> BTreeMap<&'static str, BTreeSet<AwsCall>> {
    let arn = emulator::create_secret(&format!("{table}-oauth-clients"), &fake.oauth_clients_json()).await;
    let mut settings = settings.clone();
    settings.oauth = OauthSource::SecretsManager(arn);
    settings.oauth_callback_url = Some("https://app.example/".into());
    let [add, edit, browse, credentials, recheck] = [
        recorded(table, key).await,
        recorded(table, key).await,
        recorded(table, key).await,
        recorded(table, key).await,
        recorded(table, key).await,
    ];
    let clients =
        |r: &Recorded| Arc::new(ClientsLoader::with_secrets_client(settings.oauth.clone(), r.secrets.clone()));
    let keeper =
        |r: &Recorded| TokenKeeper::with_clients(r.store.clone(), r.sealer.clone(), &settings.bitbucket, clients(r));
    let verifier = Verifier::new(&settings.bitbucket).unwrap();
    let mut api = Api::new(add.store.clone(), add.sealer.clone(), settings.clone());
    api.add = AddHandler::new(add.store.clone(), add.sealer.clone(), verifier.clone(), settings.clone());
    api.add.oauth.clients = clients(&add);
    api.edit = EditHandler {
        store: edit.store.clone(),
        sealer: edit.sealer.clone(),
        verifier: verifier.clone(),
        settings: settings.clone(),
        keeper: keeper(&edit),
    };
    api.browse = BrowseHandler {
        store: browse.store.clone(),
        http: LazyHttp::new(&settings.bitbucket),
        settings: settings.clone(),
        keeper: keeper(&browse),
    };
    api.credentials = CredentialsHandler {
        store: credentials.store.clone(),
        settings: settings.clone(),
        keeper: keeper(&credentials),
    };
    let rechecker = RecheckHandler {
        store: recheck.store.clone(),
        verifier,
        events: Arc::new(EventBridgeEvents::new(recheck.events.clone(), "default")),
        settings: RecheckSettings { interval: std::time::Duration::ZERO, ..RecheckSettings::default() },
        circuits: Default::default(),
        keeper: keeper(&recheck),
    };
    // The test's own hands on custody, outside every function's recording.
    let sdk = emulator::sdk_config_at(&emulator::endpoint()).await;
    let hands = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let seal = KmsSealer::new(aws_sdk_kms::Client::new(&sdk), key);
    let cloud = fake.url("cloud");
    let connected = oauth_flow::connect(&api, "olga", &cloud).await;
    assert_eq!(connected.status, 201, "{}", connected.text);
    let id = connected.json["id"].as_str().unwrap().to_owned();
    let refreshes = || fake.oauth().refresh_calls;
    let expire = || oauth_flow::expire_stored_access(&hands, &seal, "olga", &id, &cloud);

    expire().await;
    let get = json!({"action": "get", "owner": "olga", "connection_id": id, "purpose": "git"});
    assert_eq!(api.invoke_credentials(get).await["ok"], true);
    assert_eq!(refreshes(), 1, "credentials refreshed");
    expire().await;
    api.send(Call::get(format!("/connections/{id}/workspaces")).user("olga")).await;
    assert_eq!(refreshes(), 2, "browse refreshed");
    expire().await;
    assert_eq!(api.send(Call::post(format!("/connections/{id}/verify")).user("olga")).await.status, 200);
    assert_eq!(refreshes(), 3, "a re-verify refreshed");
    expire().await;
    let report = rechecker.run(std::time::Instant::now() + std::time::Duration::from_secs(30)).await;
    assert!(report.verified >= 1, "{report:?}");
    assert_eq!(refreshes(), 4, "the recheck refreshed");

    [("add", &add), ("edit", &edit), ("browse", &browse), ("credentials", &credentials), ("recheck", &recheck)]
        .into_iter()
        .map(|(function, recorded)| (function, recorded.actions.lock().unwrap().clone()))
        .chain([("list", BTreeSet::new()), ("delete", BTreeSet::new()), ("web", BTreeSet::new())])
        .collect()
}

fn actions(calls: &BTreeMap<&'static str, BTreeSet<AwsCall>>) -> BTreeMap<&'static str, BTreeSet<String>> {
    calls.iter().map(|(function, calls)| (*function, calls.iter().map(|c| c.action.clone()).collect())).collect()
}

/// Every recorded call, evaluated as AWS would authorize it against the template's
/// identity policies, key policies (the table key through DynamoDB too), resource
/// policies and explicit denies; and the principals that must be refused, refused.
/// No emulator enforces any of this: moto allowed all of it.
fn authorized_on_aws(calls: &BTreeMap<&str, BTreeSet<AwsCall>>, oauth_calls: &BTreeMap<&str, BTreeSet<AwsCall>>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/iac/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test installs it (pinned cfn-lint brings PyYAML)",
        python.display()
    );
    let listed = |calls: &BTreeMap<&str, BTreeSet<AwsCall>>| {
        calls
            .iter()
            .map(|(function, calls)| {
                let calls: Vec<_> = calls
                    .iter()
                    .map(|c| json!({"action": c.action, "resource": c.resource, "context_keys": c.context_keys}))
                    .collect();
                (function.to_string(), serde_json::Value::Array(calls))
            })
            .collect::<serde_json::Map<_, _>>()
    };
    let document = serde_json::json!({"calls": listed(calls), "oauth_calls": listed(oauth_calls)});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let output = std::process::Command::new(python)
        .arg(root.join("scripts/lib/authz.py"))
        .arg(root.join("infra/template.yaml"))
        .arg(&path)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "AWS would not authorize this deployment as the code uses it:\n{report}");
}
