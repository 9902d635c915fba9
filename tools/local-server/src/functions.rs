//! Every function's handler, built once as its `main` builds it, and invoked with
//! the payload Lambda would hand it.

use std::time::{Duration, Instant};

use connections::config::Config;
use connections::handlers::web::WebConfig;
use connections::handlers::{
    AddHandler, BrowseHandler, CredentialsHandler, DeleteHandler, EditHandler, ListHandler, RecheckHandler, WebHandler,
};
use connections::runtime;
use connections::serve::handle_event;
use connections::verify::Verifier;
use connections::verify::client::LazyHttp;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// The recheck's budget per invocation, as the template gives the function.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Functions {
    add: AddHandler,
    list: ListHandler,
    edit: EditHandler,
    delete: DeleteHandler,
    browse: BrowseHandler,
    web: WebHandler,
    credentials: CredentialsHandler,
    recheck: RecheckHandler,
}

/// Why an invocation has no answer from the function.
#[derive(Debug)]
pub enum Failure {
    /// No function of that name (Lambda: 404 `ResourceNotFoundException`).
    NoSuchFunction,
    /// The function failed (Lambda: 200 with `X-Amz-Function-Error: Unhandled`).
    Unhandled { error_type: &'static str, message: String },
}

impl Functions {
    pub async fn build(config: Config, web: &WebConfig) -> Result<Self, String> {
        let (store, sealer) = runtime::store_and_sealer(&config, runtime::Open::Table).await?;
        let events = runtime::events(&config)?;
        let settings = config.settings;
        let verifier = Verifier::new(&settings.bitbucket).map_err(|e| e.to_string())?;
        // One per handler, as each function process has its own.
        let keeper = || settings.token_keeper(store.clone(), sealer.clone());
        Ok(Self {
            add: AddHandler::new(store.clone(), sealer.clone(), verifier.clone(), settings.clone()),
            list: ListHandler { store: store.clone(), settings: settings.clone() },
            edit: EditHandler {
                store: store.clone(),
                sealer: sealer.clone(),
                verifier: verifier.clone(),
                settings: settings.clone(),
                keeper: keeper().sharing(verifier.lazy_http()),
            },
            delete: DeleteHandler { store: store.clone(), settings: settings.clone() },
            browse: BrowseHandler {
                store: store.clone(),
                http: LazyHttp::new(&settings.bitbucket),
                settings: settings.clone(),
                keeper: keeper(),
            },
            web: WebHandler::new(web),
            credentials: CredentialsHandler::new(store.clone(), sealer.clone(), settings.clone()),
            recheck: RecheckHandler {
                keeper: keeper().sharing(verifier.lazy_http()),
                store,
                verifier,
                events,
                settings: config.recheck,
                circuits: Default::default(),
            },
        })
    }

    /// Runs function `name` on `payload`, as one Lambda invocation.
    pub async fn invoke(&'static self, name: &str, payload: Value, request_id: &str) -> Result<Value, Failure> {
        match name {
            "add" => http(payload, request_id, move |r| self.add.handle(r)).await,
            "list" => http(payload, request_id, move |r| self.list.handle(r)).await,
            "edit" => http(payload, request_id, move |r| self.edit.handle(r)).await,
            "delete" => http(payload, request_id, move |r| self.delete.handle(r)).await,
            "browse" => http(payload, request_id, move |r| self.browse.handle(r)).await,
            "web" => http(payload, request_id, move |r| self.web.handle(r)).await,
            "credentials" => Ok(self.credentials.handle(payload, request_id).await),
            // No queue locally: a scheduled event checks everything in the run; an SQS
            // event's batch is checked as a worker checks it.
            "recheck" => {
                let deadline = Instant::now() + RECHECK_TIMEOUT - Duration::from_secs(1);
                Ok(self.recheck.handle(&payload, None, deadline).await)
            }
            _ => Err(Failure::NoSuchFunction),
        }
    }
}

async fn http<F, Fut>(payload: Value, request_id: &str, handle: F) -> Result<Value, Failure>
where
    F: Fn(lambda_http::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| unhandled("InvalidEvent", e))?;
    let mut context = Context::default();
    request_id.clone_into(&mut context.request_id);
    handle_event(handle, LambdaEvent::new(request, context)).await.map_err(|e| unhandled("Handler", e))
}

fn unhandled(error_type: &'static str, error: impl std::fmt::Display) -> Failure {
    Failure::Unhandled { error_type, message: error.to_string() }
}

impl Failure {
    /// The body Lambda answers a function's failure with (`None`: no function ran).
    pub fn body(&self) -> Option<Value> {
        match self {
            Self::NoSuchFunction => None,
            Self::Unhandled { error_type, message } => Some(json!({"errorType": error_type, "errorMessage": message})),
        }
    }
}
