//! `edit` function: see `connections::handlers::edit`.

use connections::config::Config;
use connections::handlers::EditHandler;
use connections::runtime;
use connections::verify::Verifier;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config).await?;
    let verifier = Verifier::new(&config.settings.bitbucket)?;
    let handler = EditHandler { store, sealer, verifier, settings: config.settings };
    // Lives as long as the process; `run_concurrent` serves Lambda Managed Instances'
    // concurrent invocations and, on classic Lambda, one at a time as `run` does.
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_http::run_concurrent(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) }))
        .await
}
