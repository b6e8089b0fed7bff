//! `influx-migration tokens`: the built binary against moto's Secrets Manager, reading the
//! `authorizations.json` a `--full` rebuild leaves in its backup directory (its schema:
//! migration-cli/src/seeding/token_map.rs). The whole path (rebuild, apply, a client's old token through
//! the gateway) is versions.rs's live cell; this holds the command's own promises: no token
//! printed unless asked, and then only on stdout; `--apply` writes the map once and only once.

use std::process::Command;

use serde_json::{Value, json};
use shared::secret::{TokenHash, token_hash};
use testbed::Moto;
use testbed::stack::lambda::workspace_binary;

const SECRET: &str = "live/endpoints";
const NEW_ALICE: &str = "dst-token-alice-0123456789";
const NEW_OPERATOR: &str = "dst-token-operator-0123456789";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(moto: &Moto, args: &[&str]) -> Out {
    let out = Command::new(workspace_binary("influx-migration"))
        .arg("tokens")
        .args(args)
        .args(["--secret-id", SECRET])
        .envs(moto.env())
        .env_remove("LIVE_STACK")
        .env_remove("RUST_LOG")
        .output()
        .expect("run influx-migration");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn authorizations_file(dir: &std::path::Path) {
    let doc = json!({
        "version": 1,
        "source_url": "http://127.0.0.1:1",
        "destination_url": "http://127.0.0.1:2",
        "source_version": "v2.9.1",
        "destination_version": "v2.7.12",
        "authorizations": [
            {
                "source_id": "0a", "destination_id": "1a", "description": "telegraf on web-1",
                "org": "acme", "user": "alice", "status": "active",
                "permissions": ["write:orgs/acme/buckets/metrics"],
                "destination_token": NEW_ALICE,
                "source_token_hash": token_hash("src-token-alice", TokenHash::Sha256).expose()
            },
            {
                "source_id": "0b", "destination_id": "1b", "description": "admin's Token",
                "org": "", "user": "admin", "status": "active",
                "permissions": ["read:authorizations", "write:authorizations"],
                "destination_token": NEW_OPERATOR,
                "source_token_hash": token_hash("src-token-operator", TokenHash::Sha256).expose()
            }
        ]
    });
    std::fs::write(dir.join("authorizations.json"), doc.to_string()).unwrap();
}

async fn secret(moto: &Moto) -> (Value, String) {
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let v = secrets.get_secret_value().secret_id(SECRET).send().await.unwrap();
    (serde_json::from_str(v.secret_string().unwrap()).unwrap(), v.version_id().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_lists_without_tokens_shows_them_only_when_asked_and_applies_the_map_once() {
    let moto = Moto::start().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let start = json!({"source": {"url": "http://127.0.0.1:1"}, "destination": {"url": "http://127.0.0.1:2"}, "read": "source", "note": "kept"});
    secrets.create_secret().name(SECRET).secret_string(start.to_string()).send().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_str().unwrap();

    // Missing file: a plain error that says where it comes from.
    let missing = cli(&moto, &["--dir-name", dir]);
    assert_eq!(missing.code, 1, "{}{}", missing.stdout, missing.stderr);
    assert!(
        missing.stderr.contains("authorizations.json") && missing.stderr.contains("--full"),
        "{}",
        missing.stderr
    );

    authorizations_file(work.path());
    let list = cli(&moto, &["--dir-name", dir]);
    assert_eq!(list.code, 0, "{}{}", list.stdout, list.stderr);
    for t in [NEW_ALICE, NEW_OPERATOR, "src-token-alice", "$influxdb2-sha256$"] {
        assert!(!list.stdout.contains(t) && !list.stderr.contains(t), "{t} printed:\n{}", list.stdout);
    }
    assert!(
        list.stdout.contains("telegraf on web-1") && list.stdout.contains("user alice, org acme"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("write:orgs/acme/buckets/metrics"), "{}", list.stdout);
    assert!(list.stdout.contains("--show-tokens"), "{}", list.stdout);

    let shown = cli(&moto, &["--dir-name", dir, "--show-tokens"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains(NEW_ALICE) && shown.stdout.contains(NEW_OPERATOR), "{}", shown.stdout);
    assert!(!shown.stderr.contains(NEW_ALICE), "tokens go to stdout only: {}", shown.stderr);
    let (_, before) = secret(&moto).await;

    let applied = cli(&moto, &["--dir-name", dir, "--apply", "--json"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let doc: Value = serde_json::from_str(&applied.stdout).unwrap();
    assert_eq!(doc["apply"]["outcome"], "written", "{doc}");
    assert_eq!(doc["apply"]["mappings"], 2, "{doc}");
    assert!(!applied.stdout.contains(NEW_ALICE), "--json without --show-tokens prints no token");
    let (after, version) = secret(&moto).await;
    assert_ne!(version, before);
    let hashes = &after["mappings"]["token_hashes"];
    assert_eq!(hashes[token_hash("src-token-alice", TokenHash::Sha256).expose()], NEW_ALICE, "{hashes}");
    assert_eq!(hashes[token_hash("src-token-operator", TokenHash::Sha256).expose()], NEW_OPERATOR);
    assert_eq!(after["note"], "kept", "fields the command does not know survive");
    assert_eq!(after["read"], "source");

    let again = cli(&moto, &["--dir-name", dir, "--apply", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let doc: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(doc["apply"]["outcome"], "already", "{doc}");
    assert_eq!(secret(&moto).await.1, version, "a second apply writes no version");
}
