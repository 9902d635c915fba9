//! `list` function: see `connections::handlers::list`.

use connections::config::Config;
use connections::handlers::ListHandler;
use connections::runtime;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let handler = ListHandler { store: runtime::store(&config).await?, settings: config.settings };
    let handler = &handler;
    lambda_http::run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
