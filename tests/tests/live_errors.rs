//! The live commands' AWS failures in plain words: what went wrong and what to do.
//!
//! Regression (issue 13): without AWS credentials, `verify --stack …` printed the SDK's whole
//! error chain in its `Debug` form, 2 kB of `ProviderAttempt { … }` and `DispatchFailure(…)`.

use std::process::Command;

use testbed::stack::lambda::workspace_binary;
use testbed::{Influxd, Moto};

/// Runs `influx-migration` with only `env` (no inherited AWS settings); (exit code, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let home = tempfile::tempdir().expect("a home without ~/.aws");
    let out = Command::new(workspace_binary("influx-migration"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .expect("run influx-migration");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Plain words: short, no Rust debug forms.
fn assert_plain(what: &str, stderr: &str) {
    for debug in ["ProviderAttempt", "DispatchFailure", "ConnectorError", "Some(", "{ "] {
        assert!(!stderr.contains(debug), "{what}: a debug dump ({debug:?}):\n{stderr}");
    }
    assert!(stderr.len() < 600, "{what}: {} bytes of error:\n{stderr}", stderr.len());
}

#[test]
fn without_credentials_the_live_commands_say_so_and_what_to_set() {
    let region = [("AWS_REGION", "us-east-1")];
    for args in [
        vec!["status", "--stack", "live-core"],
        vec![
            "verify",
            "--stack",
            "live-core",
            "--src-host",
            "http://127.0.0.1:9",
            "--dest-host",
            "http://127.0.0.1:9",
        ],
        vec!["rollback", "--secret-id", "live/endpoints"],
    ] {
        let what = args.join(" ");
        let (code, stderr) = run(&args, &region);
        assert_ne!(code, 0, "{what}: {stderr}");
        assert!(stderr.contains("no AWS credentials were found"), "{what}: {stderr}");
        assert!(stderr.contains("AWS_PROFILE") && stderr.contains("aws configure"), "{what}: {stderr}");
        assert_plain(&what, &stderr);
    }
    // Credentials but no region.
    let (code, stderr) = run(
        &["status", "--stack", "live-core"],
        &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")],
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("no AWS region is set; set AWS_REGION"), "{stderr}");
    assert_plain("no region", &stderr);
}

#[test]
fn an_unreachable_aws_endpoint_and_a_refusal_are_named_plainly() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let creds = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ];
    let mut env = creds.to_vec();
    env.push(("AWS_ENDPOINT_URL", url.as_str()));
    let (code, stderr) = run(&["status", "--stack", "live-core"], &env);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("could not reach AWS"), "{stderr}");
    assert!(stderr.contains("AWS_ENDPOINT_URL"), "{stderr}");
    assert_plain("unreachable", &stderr);

    // The service's own refusal: its code and message.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let moto = rt.block_on(Moto::start());
    let moto_env: Vec<(String, String)> = moto.env();
    let mut env: Vec<(&str, &str)> = moto_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("HOME", "/nonexistent"));
    let (code, stderr) = run(&["verify", "--secret-id", "no/such/secret"], &env);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
    assert!(stderr.contains("no/such/secret"), "{stderr}");
    assert_plain("refused", &stderr);
}

#[test]
fn verify_between_two_given_hosts_needs_no_aws_account() {
    // Regression: with --src-host and --dest-host given, a named deployment (here LIVE_STACK, as
    // an operator's shell often has it) made verify read the endpoint secret first, and without
    // AWS it failed before comparing anything.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = rt.block_on(Influxd::start_named("verify-alone"));
    rt.block_on(db.write_ok(&db.bucket, "s", "m,host=a v=1 1700000000\nm,host=b v=2 1700000001"));
    let env = [
        ("AWS_REGION", "us-east-1"),
        ("LIVE_STACK", "live-core"),
        ("INFLUX_SRC_TOKEN", db.token.as_str()),
        ("INFLUX_DEST_TOKEN", db.token.as_str()),
    ];
    let out = Command::new(workspace_binary("influx-migration"))
        .args(["verify", "--src-host", &db.url, "--dest-host", &db.url, "--stop", "2030-01-01T00:00:00Z"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env)
        .output()
        .expect("run influx-migration");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("no AWS credentials were found"), "it says why the deployment was not read: {all}");
    assert!(all.contains("comparing the given hosts"), "{all}");
    assert_plain("verify alone", &stderr);
}
