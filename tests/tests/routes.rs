//! One route table: what API Gateway routes in infra/template.yaml, what the local
//! server routes (`connections::routes`) and what `cargo lambda watch` routes from
//! the workspace manifest name the same methods, paths and functions.

use std::collections::BTreeSet;

use blackbox::local::repository_root;
use connections::routes::ROUTES;

type Routes = BTreeSet<(String, String, String)>;

fn table() -> Routes {
    ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned(), r.function.to_owned())).collect()
}

#[test]
fn the_local_server_routes_as_the_template_does() {
    let text = std::fs::read_to_string(repository_root().join("infra/template.yaml")).unwrap();
    let template: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut routes = Routes::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        for (_, event) in resource["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if event["Type"].as_str() == Some("HttpApi") {
                let properties = &event["Properties"];
                let (method, path) = (properties["Method"].as_str().unwrap(), properties["Path"].as_str().unwrap());
                routes.insert((method.to_owned(), path.to_owned(), function.to_owned()));
            }
        }
    }
    assert_eq!(routes.len(), 13, "the template's HTTP routes: {routes:?}");
    assert_eq!(routes, table());
}

#[test]
fn cargo_lambda_watch_routes_as_the_template_does() {
    let manifest = std::fs::read_to_string(repository_root().join("Cargo.toml")).unwrap();
    let router = manifest.split("[workspace.metadata.lambda.watch.router]\n").nth(1).unwrap();
    let router: Vec<&str> =
        router.split("\n[").next().unwrap().lines().filter(|line| !line.trim_start().starts_with('#')).collect();
    let router = router.join("\n");
    let mut routes = Routes::new();
    // `"/path" = [{ method = "GET", function = "list" }, ...]`; the watch writes a
    // catch-all as `{*name}` where API Gateway writes `{name+}`.
    for entry in router.split("\n\"").map(|e| e.trim_start_matches('"')) {
        let Some((path, targets)) = entry.split_once("\" = [") else { continue };
        let path = path.replace("{*path}", "{proxy+}");
        for target in targets.split('{').skip(1) {
            let field = |name: &str| target.split(&format!("{name} = \"")).nth(1).and_then(|v| v.split('"').next());
            routes.insert((field("method").unwrap().to_owned(), path.clone(), field("function").unwrap().to_owned()));
        }
    }
    assert_eq!(routes, table());
}
