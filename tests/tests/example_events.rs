//! The example events beside each function (what `cargo lambda invoke
//! --data-file` sends) are valid API Gateway v2 events that reach their route.

use std::path::PathBuf;

use blackbox::api::{Api, test_settings};
use connections::handlers::WebHandler;
use connections::handlers::web::WebConfig;

fn events(function: &str) -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../functions").join(function).join("events");
    let mut found: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap()))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "{function} has no example events");
    found
}

/// The request handed to the named HTTP function, as Lambda would.
async fn handle(api: &Api, function: &str, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
    match function {
        "add" => api.add.handle(request).await,
        "list" => api.list.handle(request).await,
        "edit" => api.edit.handle(request).await,
        "browse" => api.browse.handle(request).await,
        _ => api.delete.handle(request).await,
    }
}

#[tokio::test]
async fn every_example_event_is_answered_by_its_function() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let mut answered = Vec::new();
    for function in ["add", "list", "edit", "delete", "browse"] {
        for (file, text) in events(function) {
            let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{function}/{file}: {e}"));
            let response = handle(&api, function, request).await;
            let body = format!("{:?}", response.body());
            assert!(!body.contains("unauthenticated"), "{function}/{file} carries the authorizer's claims");
            assert!(!body.contains("method_not_allowed"), "{function}/{file} reaches a route");
            answered.push((format!("{function}/{file}"), response.status().as_u16()));
        }
    }
    // The example id does not exist and the example token reaches no Bitbucket;
    // what matters is each route answered with its own problem, not a 5xx.
    let expected = [
        ("add/create.json", 422),
        ("browse/repositories.json", 404),
        ("delete/delete.json", 404),
        ("edit/rename.json", 404),
        ("edit/verify.json", 404),
        ("list/get.json", 404),
        ("list/list.json", 200),
    ];
    let mut answered_sorted = answered.clone();
    answered_sorted.sort();
    let expected: Vec<(String, u16)> = expected.iter().map(|(f, s)| ((*f).to_owned(), *s)).collect();
    assert_eq!(answered_sorted, expected);
}

/// The credentials function's examples are worker invocations, answered with a
/// clear refusal for an id that does not exist (never an invocation error).
#[tokio::test]
async fn the_credentials_examples_are_understood() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    for (file, text) in events("credentials") {
        let event: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("credentials/{file}: {e}"));
        let answer = api.invoke_credentials(event).await;
        assert_eq!(answer["code"], "not_found", "credentials/{file}: {answer}");
    }
    let schedule = events("recheck");
    assert_eq!(schedule.len(), 1, "the schedule's example event");
}

/// A method a resource does not have is refused with 405 and an `Allow` header
/// (RFC 9110 §15.5.6) naming exactly the methods `infra/openapi.yaml` gives that
/// path, whichever function receives it.
#[tokio::test]
async fn a_method_the_resource_lacks_is_refused_with_the_documents_allow_header() {
    let document = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/openapi.yaml");
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(document).unwrap()).unwrap();
    let documented = |template: &str| -> Vec<String> {
        let mut methods: Vec<String> = document["paths"][template]
            .as_mapping()
            .unwrap_or_else(|| panic!("{template} is not in the document"))
            .keys()
            .filter_map(|key| key.as_str())
            .filter(|key| ["get", "post", "put", "patch", "delete"].contains(key))
            .map(str::to_uppercase)
            .collect();
        methods.sort();
        methods
    };
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let mut checked = 0;
    for function in ["add", "list", "edit", "delete", "browse"] {
        for (file, text) in events(function) {
            let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
            let template = event["routeKey"].as_str().unwrap().split_once(' ').unwrap().1.to_owned();
            event["requestContext"]["http"]["method"] = "PUT".into();
            event["routeKey"] = format!("PUT {template}").into();
            let request = lambda_http::request::from_str(&event.to_string()).unwrap();
            let response = handle(&api, function, request).await;
            let what = format!("PUT to {function}/{file} ({template})");
            assert_eq!(response.status().as_u16(), 405, "{what}");
            let allow = response.headers().get("allow").unwrap_or_else(|| panic!("{what}: no Allow header"));
            let mut allowed: Vec<String> = allow.to_str().unwrap().split(", ").map(str::to_owned).collect();
            allowed.sort();
            assert_eq!(allowed, documented(&template), "{what}");
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "every routed example event");
}

/// `event` with its raw query string replaced, through the functions' own event loop.
async fn with_query<F, Fut>(handle: F, event: &str, query: &str) -> serde_json::Value
where
    F: Fn(lambda_http::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>> + Send + 'static,
{
    let mut event: serde_json::Value = serde_json::from_str(event).unwrap();
    event["rawQueryString"] = query.into();
    let payload: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
    let event = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
    connections::serve::handle_event(handle, event).await.unwrap()
}

fn code_of(answer: &serde_json::Value) -> String {
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap_or("{}")).unwrap_or_default();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// API Gateway hands the query over as the client sent it. A raw `"`, `<` or space
/// made `lambda_http` panic before any handler ran (a bare 502, on every route, the
/// page's too); each function now answers 400 with a problem.
#[tokio::test]
async fn a_query_no_uri_may_carry_is_a_400_problem_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let api: &'static Api = Box::leak(Box::new(Api::embedded(dir.path(), test_settings())));
    let web: &'static WebHandler = Box::leak(Box::new(WebHandler::new(&WebConfig::default())));
    let bad = "q=\"<script>\" and more";
    let example = |function: &str| events(function).remove(0).1;
    let mut unguarded: serde_json::Value = serde_json::from_str(&example("list")).unwrap();
    unguarded["rawQueryString"] = bad.into();
    let converted = std::panic::catch_unwind(|| lambda_http::request::from_str(&unguarded.to_string()));
    assert!(converted.is_err(), "lambda_http alone still converts this query: the guard may be unnecessary");

    let answers = [
        ("add", with_query(move |r| api.add.handle(r), &example("add"), bad).await),
        ("list", with_query(move |r| api.list.handle(r), &example("list"), bad).await),
        ("edit", with_query(move |r| api.edit.handle(r), &example("edit"), bad).await),
        ("delete", with_query(move |r| api.delete.handle(r), &example("delete"), bad).await),
        ("browse", with_query(move |r| api.browse.handle(r), &example("browse"), bad).await),
        ("web", with_query(move |r| web.handle(r), &example("web"), bad).await),
    ];
    for (function, answer) in answers {
        assert_eq!(answer["statusCode"], 400, "{function}: {answer}");
        assert_eq!(code_of(&answer), "malformed_query", "{function}: {answer}");
        assert_eq!(answer["headers"]["content-type"], "application/problem+json", "{function}");
    }

    // A well-formed query is the handler's, whatever header a client adds.
    let listing = events("list").into_iter().find(|(file, _)| file == "list.json").unwrap().1;
    let mut spoofed: serde_json::Value = serde_json::from_str(&listing).unwrap();
    spoofed["rawQueryString"] = "limit=5".into();
    spoofed["headers"]["x-connections-malformed-query"] = "1".into();
    let list = with_query(move |r| api.list.handle(r), &spoofed.to_string(), "limit=5").await;
    assert_eq!(list["statusCode"], 200, "{list}");
}
