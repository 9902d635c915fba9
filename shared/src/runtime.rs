//! Process start-up shared by the functions (and the local server): logging and building the
//! handler's ports from configuration, once.

use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Backend, Config};
use crate::seal::{KmsSealer, Sealer};
use crate::store::{ConnectionStore, Connections, DynamoStore};

/// Targets that log raw events or request bodies (passwords, tokens) at TRACE
/// or DEBUG. They are held at INFO whatever `RUST_LOG` asks for.
const HELD_AT_INFO: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_kms",
    "aws_sdk_dynamodb",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
];

/// The log filter for a `RUST_LOG`-style request (`level` and `target=level`
/// directives), with the leaky targets capped. A target filter rather than
/// `EnvFilter`: no regular-expression engine in the binary or at start.
pub fn log_filter(requested: &str) -> Targets {
    // What deployments ask for (`info`, or nothing): a single level that needs no
    // target held back, without parsing directives at every cold start.
    let requested_level = if requested.trim().is_empty() { Ok(LevelFilter::INFO) } else { requested.trim().parse() };
    if let Ok(level) = requested_level
        && level <= LevelFilter::INFO
    {
        return Targets::new().with_default(level);
    }
    let directives: Vec<String> = requested
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !HELD_AT_INFO.iter().any(|t| d.starts_with(t)))
        .map(|d| if d.eq_ignore_ascii_case("trace") { "debug".to_owned() } else { d.to_owned() })
        .collect();
    let info = || Targets::new().with_default(LevelFilter::INFO);
    // The held targets are added as built directives: formatting and parsing a
    // dozen of them was 30 k instructions of every cold start.
    let asked = if directives.is_empty() { info() } else { directives.join(",").parse().unwrap_or_else(|_| info()) };
    asked.with_targets(HELD_AT_INFO.iter().map(|target| (*target, LevelFilter::INFO)))
}

/// Runs a function's `main`. Lambda sends an execution environment one event at a
/// time unless `AWS_LAMBDA_MAX_CONCURRENCY` (Lambda Managed Instances) allows more.
/// One event at a time gets one thread: a function's memory buys it a fraction of a
/// vCPU (1,769 MB buys one), so worker threads would add only their start-up
/// (50 k instructions, 6% of list's) and cross-thread hand-offs. Several at once get
/// a thread per core.
pub fn start<T>(main: impl Future<Output = Result<T, lambda_runtime::Error>>) -> Result<T, lambda_runtime::Error> {
    runtime_for(std::env::var("AWS_LAMBDA_MAX_CONCURRENCY").ok().as_deref())?.block_on(main)
}

fn runtime_for(max_concurrency: Option<&str>) -> std::io::Result<tokio::runtime::Runtime> {
    let concurrent = max_concurrency.and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 1);
    let mut builder = match concurrent {
        true => tokio::runtime::Builder::new_multi_thread(),
        false => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build()
}

/// JSON lines on stdout, which Lambda ships to CloudWatch.
pub fn init_logging() {
    let requested = std::env::var("RUST_LOG").or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL")).unwrap_or_default();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(LevelFilter::TRACE)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .finish()
        .with(log_filter(&requested.to_ascii_lowercase()))
        .init();
}

/// Which AWS connections start-up opens, so that the first request finds them
/// (`aws::warm`): the table's always, the key's for a function whose usual request
/// seals or opens a secret. A function that never needs KMS never connects to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    Table,
    TableAndKey,
}

/// The store the configuration names, its connection open.
pub async fn store(config: &Config) -> Result<Arc<dyn ConnectionStore>, String> {
    open_store(config, |store| Arc::new(store) as Arc<dyn ConnectionStore>, |store| store).await
}

/// The connections aggregate alone, for functions that use nothing else (list,
/// delete): built from the concrete store, so the function's binary holds no vtable
/// of the other aggregates and none of the DynamoDB operations only they call.
pub async fn connections(config: &Config) -> Result<Arc<dyn Connections>, String> {
    open_store(config, |store| Arc::new(store) as Arc<dyn Connections>, |store| store as Arc<dyn Connections>).await
}

async fn open_store<S: ?Sized>(
    config: &Config,
    aws: impl FnOnce(DynamoStore) -> Arc<S>,
    embedded: impl FnOnce(Arc<dyn ConnectionStore>) -> Arc<S>,
) -> Result<Arc<S>, String> {
    Ok(match &config.backend {
        Backend::Aws { table, open_at_start, .. } => {
            let (_, store) = dynamo_store(table)?;
            if *open_at_start {
                let _ = tokio::time::timeout(crate::aws::warm::BUDGET, store.open_connection()).await;
            }
            aws(store)
        }
        Backend::Embedded { dir } => embedded(embedded::store(dir)?),
    })
}

/// The SDK configuration and the table's store, once AWS's trust anchors are known good.
fn dynamo_store(table: &str) -> Result<(aws_config::SdkConfig, DynamoStore), String> {
    crate::aws::check_trust()?;
    let sdk = crate::aws::sdk_config()?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    Ok((sdk, store))
}

/// Where status events go: EventBridge when deployed, the log locally.
pub fn events(config: &Config) -> Result<Arc<dyn crate::events::Events>, String> {
    Ok(match (&config.backend, &config.event_bus) {
        (Backend::Aws { .. }, Some(bus)) => {
            Arc::new(crate::events::EventBridgeEvents::lazy(crate::aws::sdk_config()?, bus.clone()))
        }
        _ => Arc::new(crate::events::LoggedEvents),
    })
}

/// Both ports, sharing one SDK configuration, with the connections `open` names open.
pub async fn store_and_sealer(
    config: &Config,
    open: Open,
) -> Result<(Arc<dyn ConnectionStore>, Arc<dyn Sealer>), String> {
    Ok(match &config.backend {
        Backend::Aws { table, key_id, open_at_start } => {
            let key_id = key_id.clone().ok_or("CONNECTIONS_KEY_ID must name the KMS key")?;
            let (sdk, store) = dynamo_store(table)?;
            let sealer = KmsSealer::lazy(sdk, key_id);
            // Both at once: the round trips overlap.
            let opening = async {
                match open {
                    _ if !open_at_start => {}
                    Open::Table => {
                        store.open_connection().await;
                    }
                    Open::TableAndKey => {
                        futures::future::join(store.open_connection(), sealer.open_connection()).await;
                    }
                }
            };
            let _ = tokio::time::timeout(crate::aws::warm::BUDGET, opening).await;
            (Arc::new(store), Arc::new(sealer))
        }
        Backend::Embedded { dir } => (embedded::store(dir)?, embedded::sealer(dir)?),
    })
}

#[cfg(feature = "embedded")]
mod embedded {
    use std::path::Path;
    use std::sync::Arc;

    use crate::seal::{LocalSealer, Sealer};
    use crate::store::{ConnectionStore, EmbeddedStore};

    pub fn store(dir: &Path) -> Result<Arc<dyn ConnectionStore>, String> {
        Ok(Arc::new(EmbeddedStore::open(&dir.join("connections.sqlite3"))?))
    }

    pub fn sealer(dir: &Path) -> Result<Arc<dyn Sealer>, String> {
        Ok(Arc::new(LocalSealer::open_or_create(&dir.join("secret.key"))?))
    }
}

/// Builds for Lambda leave the embedded backend out (see the `embedded` feature).
#[cfg(not(feature = "embedded"))]
mod embedded {
    use std::path::Path;
    use std::sync::Arc;

    use crate::seal::Sealer;
    use crate::store::ConnectionStore;

    const ABSENT: &str = "this build has no embedded backend: set CONNECTIONS_BACKEND=aws with CONNECTIONS_TABLE and \
                          CONNECTIONS_KEY_ID, or run locally with scripts/run (which builds with --features \
                          connections/embedded)";

    pub fn store(_: &Path) -> Result<Arc<dyn ConnectionStore>, String> {
        Err(ABSENT.into())
    }

    pub fn sealer(_: &Path) -> Result<Arc<dyn Sealer>, String> {
        Err(ABSENT.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_at_a_time_runs_on_one_thread_and_several_on_a_thread_per_core() {
        use tokio::runtime::RuntimeFlavor::{CurrentThread, MultiThread};
        for (max_concurrency, flavor) in
            [(None, CurrentThread), (Some("1"), CurrentThread), (Some("many"), CurrentThread), (Some("8"), MultiThread)]
        {
            let runtime = runtime_for(max_concurrency).unwrap();
            assert_eq!(runtime.handle().runtime_flavor(), flavor, "{max_concurrency:?}");
            let slept = runtime.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    tokio::time::sleep(std::time::Duration::from_millis(1)),
                )
                .await
            });
            assert!(slept.is_ok(), "timers run on {flavor:?}");
        }
    }

    #[test]
    fn leaky_targets_stay_at_info_even_when_trace_is_asked() {
        let filter = log_filter("trace,lambda_runtime=trace,my_crate=debug").to_string();
        assert!(!filter.contains("lambda_runtime=trace"), "{filter}");
        assert!(filter.contains("lambda_runtime=info"));
        assert!(filter.contains("my_crate=debug"));
        assert!(!filter.split(',').any(|d| d == "trace"));
    }

    #[test]
    fn a_plain_level_up_to_info_filters_every_target_alike() {
        use tracing::Level;
        for (requested, enabled, disabled) in [
            ("", Level::INFO, Level::DEBUG),
            ("info", Level::INFO, Level::DEBUG),
            (" WARN ", Level::WARN, Level::INFO),
            ("error", Level::ERROR, Level::WARN),
        ] {
            let filter = log_filter(&requested.to_ascii_lowercase());
            for target in ["connections", "lambda_runtime", "aws_sdk_kms", "reqwest"] {
                assert!(filter.would_enable(target, &enabled), "{requested:?} enables {target} at {enabled}");
                assert!(!filter.would_enable(target, &disabled), "{requested:?} holds {target} at {disabled}");
            }
        }
        assert!(!log_filter("off").would_enable("connections", &Level::ERROR));
        let debug = log_filter("debug");
        assert!(debug.would_enable("connections", &Level::DEBUG));
        assert!(!debug.would_enable("aws_sdk_kms", &Level::DEBUG), "a leaky target stays at info");
    }
}
