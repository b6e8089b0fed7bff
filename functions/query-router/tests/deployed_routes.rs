//! The deployed API and the router agree: every read route `infra/wiring.yaml` sends to the
//! query router is one it serves, and it serves no route the API lacks (a route only the router
//! knows is one no client can reach, and a test of it proves nothing).
//!
//! Regression (issue 11, item 6): the router served `GET /api/v2/buckets`, `/orgs` and `/dbrps`,
//! and the local gateway sent them to it, but the deployed API had no such routes.

use query_router::route::SERVED;
use testbed::stack::template::{api_methods, decoded};

#[test]
fn the_router_serves_exactly_the_read_routes_the_api_deploys() {
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .flat_map(|(path, _, methods)| methods.iter().map(move |m| (m.to_string(), path.to_string())))
        .collect();
    served.sort();
    let mut deployed: Vec<(String, String)> = api_methods(&decoded("wiring.yaml"))
        .into_iter()
        .filter(|(_, _, function)| function == "QueryRouterFunctionArn")
        .map(|(method, path, _)| (method, path))
        .collect();
    deployed.sort();
    assert_eq!(deployed, served, "deployed read routes (left) and the router's (right)");
}

#[test]
fn writes_and_only_writes_go_to_the_kinesis_writer() {
    let writes: Vec<(String, String, String)> = api_methods(&decoded("wiring.yaml"))
        .into_iter()
        .filter(|(_, _, function)| function == "KinesisWriterFunctionArn")
        .collect();
    let want = [("POST", "/api/v2/write"), ("POST", "/write")]
        .map(|(m, p)| (m.to_string(), p.to_string(), "KinesisWriterFunctionArn".to_string()));
    assert_eq!(writes, want);
}
