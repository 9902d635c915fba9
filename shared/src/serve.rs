//! The HTTP functions' event loop: `lambda_http` with one guard in front.
//!
//! `lambda_http` builds an `http::Request` from API Gateway's event with
//! `.expect(..)`; API Gateway passes `rawQueryString` as the client sent it, and a
//! raw `"`, `<` or space there is not a valid URI, so the conversion panics before
//! any handler runs (with `panic = "abort"` the process dies; API Gateway answers a
//! bare 502), on every route, the unauthenticated page included. The guard takes
//! such a query out of the event and marks it, and the request is answered with a
//! 400 problem instead.

use std::future::Future;

use lambda_http::http::HeaderValue;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Body, Error, IntoResponse, LambdaEvent, Request, Response, Service, service_fn};

use crate::problem::ApiError;

/// Set by the guard alone: a client's own header of this name is removed first.
const MALFORMED_QUERY: &str = "x-connections-malformed-query";

/// Serves `handle` until the process ends, concurrently where Lambda Managed
/// Instances ask for it and one invocation at a time on classic Lambda.
pub async fn serve_http<F, Fut>(handle: F) -> Result<(), Error>
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    lambda_runtime::run_concurrent(Guard(Adapter::from(answering(handle)))).await
}

/// What `serve_http` runs, for tests to hand API Gateway events to.
pub async fn handle_event<F, Fut>(handle: F, event: LambdaEvent<LambdaRequest>) -> Result<serde_json::Value, Error>
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let response = Guard(Adapter::from(answering(handle))).call(event).await?;
    Ok(serde_json::to_value(response)?)
}

fn answering<F, Fut>(
    handle: F,
) -> impl Service<Request, Response = Answer, Error = Error, Future: Send + 'static> + Clone + Send + 'static
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    service_fn(move |request: Request| {
        let answer = (!request.headers().contains_key(MALFORMED_QUERY)).then(|| handle(request));
        async move {
            Ok::<_, Error>(Answer(match answer {
                Some(answer) => answer.await,
                None => ApiError::MalformedQuery.to_response(),
            }))
        }
    })
}

/// A handler's response, handed to API Gateway as it is. `lambda_http`'s own conversion
/// of a `Response` collects the body again and decodes text through encoding_rs by its
/// `charset`, to arrive at the UTF-8 text the handlers already hold: 155 KB of tables
/// and code in every HTTP function, for nothing.
struct Answer(Response<Body>);

impl IntoResponse for Answer {
    fn into_response(self) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

#[derive(Clone)]
struct Guard<A>(A);

impl<A> Service<LambdaEvent<LambdaRequest>> for Guard<A>
where
    A: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = A::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), A::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        if let LambdaRequest::ApiGatewayV2(request) = &mut event.payload {
            request.headers.remove(MALFORMED_QUERY);
            if request.raw_query_string.as_deref().is_some_and(|query| !is_uri_query(query)) {
                request.raw_query_string = None;
                request.headers.insert(MALFORMED_QUERY, HeaderValue::from_static("1"));
            }
        }
        self.0.call(event)
    }
}

/// Whether `http` accepts the query as `lambda_http` will hand it over.
fn is_uri_query(query: &str) -> bool {
    query.is_empty() || lambda_http::http::Uri::try_from(format!("/?{query}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_uri_query;

    #[test]
    fn what_a_uri_may_carry_in_its_query() {
        for good in ["", "limit=5", "q=a%20b&cursor=x", "workspace=acme&q=%22x%22", "a=b/c?d"] {
            assert!(is_uri_query(good), "{good}");
        }
        for bad in ["q=a b", "q=\"x\"", "q=<script>", "q=\u{7f}", "q=a\nb"] {
            assert!(!is_uri_query(bad), "{bad:?}");
        }
    }
}
