//! `add` function: see `connections::handlers::add`.

use connections::config::Config;
use connections::handlers::AddHandler;
use connections::runtime;
use connections::serve::serve_http;
use connections::verify::Verifier;
use lambda_http::Error;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config, runtime::Open::TableAndKey).await?;
    let verifier = Verifier::new(&config.settings.bitbucket)?;
    let handler = AddHandler::new(store, sealer, verifier, config.settings);
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
