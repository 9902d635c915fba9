//! The example events beside each function (what `cargo lambda invoke
//! --data-file` sends) are valid API Gateway v2 events that reach their route.

use std::path::PathBuf;

use blackbox::api::{Api, test_settings};

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
