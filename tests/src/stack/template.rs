//! The CloudFormation templates of `infra/`, read as JSON (cfn-lint's own decoder understands the
//! short intrinsic forms such as `!Ref` and `!Sub`), and what tests need from them.

use std::process::Command;

use serde_json::Value;

use crate::bed::TestBed;

/// `infra/<name>` as JSON; panics with the decoder's message when it cannot be read.
pub fn decoded(name: &str) -> Value {
    let path = TestBed::repo_root().join("infra").join(name);
    let out = Command::new(TestBed::get().venv_bin.join("python"))
        .args([
            "-c",
            "import json,sys\nfrom cfnlint.decode import decode\nt,m=decode(sys.argv[1])\nassert not m, m\nprint(json.dumps(t))",
        ])
        .arg(&path)
        .output()
        .expect("run the test bed's python");
    assert!(out.status.success(), "decoding {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("template JSON")
}

/// Every `AWS::ApiGateway::Method` of a template: (HTTP method, path, the parameter whose
/// function its integration invokes, e.g. `QueryRouterFunctionArn`). The path is built from the
/// resources' `PathPart`s up to the API's root.
pub fn api_methods(template: &Value) -> Vec<(String, String, String)> {
    let empty = serde_json::Map::new();
    let resources = template["Resources"].as_object().unwrap_or(&empty);
    let path_of = |start: &str| -> String {
        let mut parts = Vec::new();
        let mut id = start.to_string();
        while let Some(r) = resources.get(&id).filter(|r| r["Type"] == "AWS::ApiGateway::Resource") {
            parts.push(r["Properties"]["PathPart"].as_str().unwrap_or("?").to_string());
            match r["Properties"]["ParentId"]["Ref"].as_str() {
                Some(parent) => id = parent.to_string(),
                None => break,
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    };
    let mut out = Vec::new();
    for r in resources.values().filter(|r| r["Type"] == "AWS::ApiGateway::Method") {
        let p = &r["Properties"];
        // `Fn::Sub`, or an `Fn::If` between two (the read routes' streaming and buffered URIs):
        // the function is the `${...FunctionArn}` they name.
        let uri = p["Integration"]["Uri"].to_string();
        let function = uri
            .split("${")
            .filter_map(|s| s.split('}').next())
            .find(|s| s.ends_with("FunctionArn"))
            .unwrap_or_default()
            .to_string();
        out.push((
            p["HttpMethod"].as_str().unwrap_or_default().to_string(),
            path_of(p["ResourceId"]["Ref"].as_str().unwrap_or_default()),
            function,
        ));
    }
    out.sort();
    out
}
