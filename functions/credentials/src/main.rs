//! `credentials` function (no HTTP route): see `connections::handlers::credentials`.

use connections::config::Config;
use connections::handlers::CredentialsHandler;
use connections::runtime;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config, runtime::Open::TableAndKey).await?;
    let handler = CredentialsHandler::new(store, sealer, config.settings);
    // Lives as long as the process; see `run_concurrent` in the HTTP functions.
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(handler.handle(event.payload, &event.context.request_id).await)
    }))
    .await
}
