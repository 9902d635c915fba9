//! `delete` function: see `connections::handlers::delete`.

use connections::config::Config;
use connections::handlers::DeleteHandler;
use connections::runtime;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let handler = DeleteHandler { store: runtime::store(&config).await?, settings: config.settings };
    let handler = &handler;
    lambda_http::run(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) })).await
}
