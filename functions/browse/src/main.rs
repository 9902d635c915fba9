//! `browse` function: see `connections::handlers::browse`.

use connections::config::Config;
use connections::handlers::BrowseHandler;
use connections::runtime;
use connections::serve::serve_http;
use connections::verify::client::LazyHttp;
use lambda_http::Error;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config, runtime::Open::TableAndKey).await?;
    let http = LazyHttp::new(&config.settings.bitbucket);
    let keeper = config.settings.token_keeper(store.clone(), sealer.clone()).sharing(http.clone());
    let handler = BrowseHandler { store, http, settings: config.settings, keeper };
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
