//! "Connect with Bitbucket", timed: from the page's callback reaching the service to the
//! authorization code reaching Bitbucket's token endpoint (Data Center's codes live 10
//! seconds), and the whole callback. Cold: each callback on handlers built afresh, as in
//! a new Lambda process (new DynamoDB, KMS and Secrets Manager clients, the client list
//! read from Secrets Manager on first use); warm: one set of handlers for every callback.
//! On the emulator and a loopback fake Bitbucket: AWS adds its round trips (three to
//! DynamoDB before the exchange, one to Secrets Manager when cold). Run by
//! `scripts/bench --oauth`, which starts the emulator; by hand:
//!
//!     MOTO_ENDPOINT=http://127.0.0.1:5555 cargo run -p blackbox --example oauth_callback

use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox::api::{Api, test_settings};
use blackbox::emulator;
use blackbox::fake_bitbucket::FakeBitbucket;
use blackbox::oauth_flow::{approve, finish, start};
use connections::oauth::{ClientsLoader, OauthSource};
use connections::seal::KmsSealer;
use connections::store::DynamoStore;
use serde_json::json;

const COLD: usize = 30;
const WARM: usize = 100;

struct Timing {
    to_exchange: Duration,
    whole: Duration,
}

/// Handlers as a fresh process has them: every client new, nothing read yet.
async fn fresh_api(table: &str, key: &str, source: &OauthSource) -> Api {
    let mut settings = test_settings();
    settings.oauth = source.clone();
    settings.oauth_callback_url = Some("https://app.example/".into());
    let store = Arc::new(DynamoStore::new(emulator::dynamodb().await, table));
    let sealer = Arc::new(KmsSealer::new(emulator::kms().await, key));
    let mut api = Api::new(store, sealer, settings);
    api.add.oauth.clients =
        Arc::new(ClientsLoader::with_secrets_client(source.clone(), emulator::secretsmanager().await));
    api
}

async fn one(api: &Api, fake: &FakeBitbucket, round: usize) -> Timing {
    let user = format!("user-{round}");
    let started = start(api, &user, json!({"url": fake.url("dc"), "name": format!("n{round}")})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    let redirect = approve(started.json["authorize_url"].as_str().unwrap()).await;
    let sent = Instant::now();
    let done = finish(api, &user, &redirect).await;
    let whole = sent.elapsed();
    assert_eq!(done.status, 201, "{}", done.text);
    let exchanged = *fake.oauth().exchanges.last().unwrap();
    Timing { to_exchange: exchanged - sent, whole }
}

fn summary(label: &str, timings: &[Timing]) {
    let pick = |f: fn(&Timing) -> Duration| {
        let mut values: Vec<Duration> = timings.iter().map(f).collect();
        values.sort();
        let at = |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
        format!("p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms", ms(at(0.5)), ms(at(0.99)), ms(at(1.0)))
    };
    println!("{label:<24} callback → exchange: {}", pick(|t| t.to_exchange));
    println!("{:<24} whole callback:      {}", "", pick(|t| t.whole));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let fake = FakeBitbucket::start().await;
    let dynamodb = emulator::dynamodb().await;
    let table = emulator::create_table(&dynamodb).await;
    let key = emulator::create_key(&emulator::kms().await).await;
    let arn = emulator::create_secret(&format!("{table}-oauth-clients"), &fake.oauth_clients_json()).await;
    let source = OauthSource::SecretsManager(arn);

    let mut cold = Vec::new();
    for round in 0..COLD {
        let api = fresh_api(&table, &key, &source).await;
        cold.push(one(&api, &fake, round).await);
    }
    let api = fresh_api(&table, &key, &source).await;
    one(&api, &fake, COLD).await;
    let mut warm = Vec::new();
    for round in 0..WARM {
        warm.push(one(&api, &fake, COLD + 1 + round).await);
    }
    println!("Data Center callbacks on the emulator (target: the code traded within 2 s at p99; it lives 10 s)");
    summary(&format!("cold ({COLD} processes)"), &cold);
    summary(&format!("warm ({WARM} callbacks)"), &warm);
}
