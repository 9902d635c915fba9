//! The HTTP API's routes as API Gateway holds them (infra/template.yaml): which
//! function answers which method and path. The local server routes by this table,
//! and tests/tests/routes.rs holds it equal to the template's events and to the
//! router `cargo lambda watch` reads from the workspace manifest.

/// One route: `path` is API Gateway's syntax (`{name}` one segment, `{proxy+}` the rest).
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub function: &'static str,
}

impl Route {
    /// API Gateway's `routeKey`, e.g. `GET /connections/{id}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

const fn route(method: &'static str, path: &'static str, function: &'static str) -> Route {
    Route { method, path, function }
}

/// Most specific first: the first route that matches is the one API Gateway picks.
pub const ROUTES: &[Route] = &[
    route("POST", "/connections", "add"),
    route("POST", "/oauth/flows", "add"),
    route("POST", "/oauth/callbacks", "add"),
    route("GET", "/connections", "list"),
    route("GET", "/connections/{id}", "list"),
    route("PATCH", "/connections/{id}", "edit"),
    route("POST", "/connections/{id}/verify", "edit"),
    route("DELETE", "/connections/{id}", "delete"),
    route("GET", "/connections/{id}/workspaces", "browse"),
    route("GET", "/connections/{id}/repositories", "browse"),
    route("GET", "/connections/{id}/repositories/{workspace}/{repo}/branches", "browse"),
    route("GET", "/", "web"),
    route("GET", "/{proxy+}", "web"),
];

/// The route a request takes, with its path parameters (raw, as in the path).
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: &'static Route,
    pub parameters: Vec<(&'static str, &'a str)>,
}

/// The route for `method` and `path` (no query), or `None` where API Gateway
/// answers 404 itself.
pub fn find<'a>(method: &str, path: &'a str) -> Option<Matched<'a>> {
    ROUTES.iter().filter(|route| route.method == method).find_map(|route| {
        let parameters = matches(route.path, path)?;
        Some(Matched { route, parameters })
    })
}

fn matches<'a>(pattern: &'static str, path: &'a str) -> Option<Vec<(&'static str, &'a str)>> {
    let mut parameters = Vec::new();
    let mut rest = path.strip_prefix('/')?;
    let mut wanted = pattern.strip_prefix('/')?.split('/').peekable();
    if pattern == "/" {
        return rest.is_empty().then_some(parameters);
    }
    while let Some(segment) = wanted.next() {
        if let Some(greedy) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            // `{proxy+}` takes one segment or more, whatever they hold.
            return (!rest.is_empty()).then(|| {
                parameters.push((greedy, rest));
                parameters
            });
        }
        let (here, after) = rest.split_once('/').unwrap_or((rest, ""));
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !here.is_empty() => parameters.push((name, here)),
            None if here == segment => {}
            _ => return None,
        }
        let ends_here = !rest.contains('/');
        rest = after;
        if wanted.peek().is_none() {
            return ends_here.then_some(parameters);
        }
        if ends_here {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found = (&'static str, String, Vec<(&'static str, String)>);

    /// The function, the route key and the parameters.
    fn found(method: &str, path: &str) -> Option<Found> {
        find(method, path).map(|m| {
            let parameters = m.parameters.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
            (m.route.function, m.route.key(), parameters)
        })
    }

    #[test]
    fn each_route_takes_its_own_requests() {
        let id = "01934a6e-0000-7000-8000-000000000000";
        assert_eq!(found("POST", "/connections").unwrap().0, "add");
        assert_eq!(found("GET", "/connections").unwrap().1, "GET /connections");
        assert_eq!(found("GET", &format!("/connections/{id}")).unwrap().2, vec![("id", id.to_owned())]);
        assert_eq!(found("PATCH", &format!("/connections/{id}")).unwrap().0, "edit");
        assert_eq!(found("POST", &format!("/connections/{id}/verify")).unwrap().0, "edit");
        assert_eq!(found("DELETE", &format!("/connections/{id}")).unwrap().0, "delete");
        let branches = found("GET", &format!("/connections/{id}/repositories/acme/api/branches")).unwrap();
        assert_eq!(branches.1, "GET /connections/{id}/repositories/{workspace}/{repo}/branches");
        assert_eq!(branches.2, vec![("id", id.to_owned()), ("workspace", "acme".into()), ("repo", "api".into())]);
    }

    #[test]
    fn the_page_takes_every_other_get_and_nothing_else() {
        assert_eq!(found("GET", "/").unwrap().1, "GET /");
        assert_eq!(found("GET", "/app.js").unwrap().2, vec![("proxy", "app.js".to_owned())]);
        assert_eq!(found("GET", "/connections/x/unknown").unwrap().2, vec![("proxy", "connections/x/unknown".into())]);
        assert_eq!(found("GET", "/connections/x/verify").unwrap().0, "web", "verify is a POST");
        for (method, path) in [("PUT", "/connections"), ("POST", "/"), ("DELETE", "/connections"), ("POST", "/x")] {
            assert_eq!(found(method, path), None, "{method} {path}");
        }
        assert_eq!(found("PATCH", "/connections/"), None, "an empty segment is no id");
        assert_eq!(found("DELETE", "/connections/a/b"), None);
    }
}
