//! The infrastructure: the CloudFormation templates in infra/ and the deploy script.
//!
//! - every template is clean under cfn-lint (the real one, from the test bed);
//! - the IAM roles grant named actions on this deployment's resources only;
//! - `infra/deploy.sh --dry-run` prints every AWS and cargo lambda call and changes nothing;
//! - `infra/deploy.sh` deploys to moto (CloudFormation, Lambda via `cargo lambda deploy`, IAM,
//!   Kinesis, S3, API Gateway) and every created resource is checked through its own service's
//!   API (the AWS CLI and the AWS SDK), not through the stack's status.
//!
//! moto's CloudFormation skips some types and some properties (../shared/docs/test-bed-notes.md):
//! it creates no `AWS::SecretsManager::Secret`, no `AWS::CloudWatch::Alarm`, no
//! `AWS::S3::BucketPolicy`, and ignores the stream's encryption, the bucket's public access
//! block and versioning, and the API's binary media types. The secret and the alarm are created
//! here through their own APIs (Secrets Manager, CloudWatch) from the template's properties and
//! checked there; the ignored properties are checked in the template itself. Each place says so.
//!
//! The deploy uses the debug builds of the three function binaries, staged as
//! `<dir>/<binary>/bootstrap` (`--skip-build --lambda-dir <dir>`): `cargo lambda build
//! --release` takes minutes cold and is the same command an operator runs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{Value, json};
use testbed::stack::lambda::{stage_bootstraps, workspace_binary};
use testbed::{Moto, TestBed};

fn repo() -> std::path::PathBuf {
    TestBed::repo_root()
}

use testbed::stack::template::decoded;

struct Script {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs an infra/ script with the test bed's AWS CLI and cargo-lambda.
fn script(name: &str, env: &[(String, String)], args: &[&str]) -> Script {
    let bed = TestBed::get();
    let path = format!("{}:{}", bed.venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(repo().join("infra").join(name))
        .args(args)
        .envs(env.iter().cloned())
        .env("PATH", path)
        .env("AWS_CLI", &bed.aws_cli)
        .env_remove("AWS_PROFILE")
        .current_dir(repo())
        .output()
        .expect("run the script");
    Script {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `${Name}` substitution of a `Fn::Sub` string.
fn sub(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("${{{k}}}"), v);
    }
    assert!(!s.contains("${"), "unresolved placeholder in {s}");
    s
}

fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// Every statement of every inline policy of a role, both branches of any `Fn::If`.
fn statements(role: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for policy in role["Properties"]["Policies"].as_array().unwrap() {
        for st in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            match st.get("Fn::If") {
                Some(branches) => {
                    for b in &branches.as_array().unwrap()[1..] {
                        if b.get("Ref") != Some(&json!("AWS::NoValue")) {
                            out.push(b.clone());
                        }
                    }
                }
                None => out.push(st.clone()),
            }
        }
    }
    out
}

/// No `*` action (nor `service:*`), no `*` resource; a wildcard inside a resource only below a
/// resource of this stack (e.g. the objects of the dead-letter bucket).
fn assert_specific(role: &str, st: &Value) {
    for action in as_list(&st["Action"]) {
        let a = action.as_str().unwrap_or_else(|| panic!("{role}: non-string action {action}"));
        assert!(!a.contains('*'), "{role}: wildcard action {a}");
    }
    for resource in as_list(&st["Resource"]) {
        match &resource {
            Value::String(r) => {
                assert_ne!(r, "*", "{role}: resource * for {}", st["Action"]);
                assert!(!r.contains('*') || r.starts_with("arn:aws:"), "{role}: wildcard resource {r}");
                if r.contains('*') {
                    // A deployed policy: the wildcard must follow a concrete resource name.
                    let before = &r[..r.find('*').unwrap()];
                    assert!(
                        before.ends_with('/') || before.ends_with("log-stream:"),
                        "{role}: wildcard in {r} is not under one named resource"
                    );
                }
            }
            Value::Object(o) => {
                if let Some(s) = o.get("Fn::Sub").and_then(Value::as_str) {
                    assert!(s.contains("${"), "{role}: Fn::Sub resource {s} names no stack resource");
                    if let Some(i) = s.find('*') {
                        // Right below the resource, or below a path under it (`.../stalls/x/*`).
                        let under_path = s[..i].contains("}/") && s[..i].ends_with('/');
                        assert!(
                            s[..i].ends_with("}/") || under_path || s[..i].ends_with(":log-stream:"),
                            "{role}: wildcard in {s} is not under one named resource"
                        );
                    }
                } else {
                    assert!(
                        o.contains_key("Ref") || o.contains_key("Fn::GetAtt"),
                        "{role}: resource {resource}"
                    );
                }
            }
            other => panic!("{role}: resource {other}"),
        }
    }
}

#[test]
fn cfn_lint_passes_on_every_template() {
    let bed = TestBed::get();
    let mut templates: Vec<_> = std::fs::read_dir(repo().join("infra"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    templates.sort();
    let names: Vec<_> =
        templates.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(
        names.contains(&"core.yaml".to_string()) && names.contains(&"wiring.yaml".to_string()),
        "{names:?}"
    );
    for t in &templates {
        // Errors, warnings and the informational checks.
        let out = Command::new(&bed.cfn_lint).args(["--include-checks", "I", "--"]).arg(t).output().unwrap();
        assert!(
            out.status.success(),
            "cfn-lint {}:\n{}{}",
            t.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The linter really looks: a wrong resource type fails it.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(repo().join("infra/core.yaml")).unwrap();
    std::fs::write(&broken, text.replace("AWS::Kinesis::Stream", "AWS::Kinesis::Streem")).unwrap();
    let out = Command::new(&bed.cfn_lint).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("E3006"));
}

#[test]
fn each_role_grants_only_its_functions_actions_on_this_deployments_resources() {
    let t = decoded("core.yaml");
    let resources = t["Resources"].as_object().unwrap();
    let roles: BTreeMap<&str, &Value> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::Role")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    assert_eq!(
        roles.keys().copied().collect::<Vec<_>>(),
        ["DestinationWriterRole", "KinesisWriterRole", "QueryRouterRole", "SourceWriterRole"],
        "one role per function"
    );
    let logs = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"];
    let reader = [
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "secretsmanager:GetSecretValue",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:GetObject",
        "s3:DeleteObject",
        "kms:Decrypt",
    ];
    let expected: BTreeMap<&str, Vec<&str>> = [
        (
            "KinesisWriterRole",
            vec!["kinesis:PutRecord", "secretsmanager:GetSecretValue", "kms:GenerateDataKey"],
        ),
        ("SourceWriterRole", reader.to_vec()),
        ("DestinationWriterRole", reader.to_vec()),
        ("QueryRouterRole", vec!["secretsmanager:GetSecretValue"]),
    ]
    .into_iter()
    .collect();
    for (name, role) in &roles {
        let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["Service"], "lambda.amazonaws.com", "{name}");
        let sts = statements(role);
        let mut actions = BTreeSet::new();
        for st in &sts {
            assert_eq!(st["Effect"], "Allow", "{name}");
            assert_specific(name, st);
            for a in as_list(&st["Action"]) {
                actions.insert(a.as_str().unwrap().to_string());
            }
            // Each service's actions on this deployment's own resource.
            let resource = &st["Resource"];
            for a in as_list(&st["Action"]) {
                let a = a.as_str().unwrap();
                let want = match a.split(':').next().unwrap() {
                    "kinesis" => json!({"Fn::GetAtt": ["WriteStream", "Arn"]}),
                    "secretsmanager" => json!({"Ref": "EndpointSecret"}),
                    "kms" => json!({"Ref": "StreamEncryptionKey"}),
                    "s3" if a == "s3:PutObject" => json!({"Fn::Sub": "${DeadLetterBucket.Arn}/*"}),
                    // A writer reads and deletes only its own target's stall records, and reads
                    // only its own target's park rules.
                    "s3" if a == "s3:GetObject" || a == "s3:DeleteObject" => {
                        let target = if *name == "SourceWriterRole" { "source" } else { "destination" };
                        let own = [
                            json!({"Fn::Sub": format!("${{DeadLetterBucket.Arn}}/stalls/{target}/*")}),
                            json!({"Fn::Sub": format!("${{DeadLetterBucket.Arn}}/parked/{target}/*")}),
                            json!({"Fn::Sub": format!("${{DeadLetterBucket.Arn}}/counts/{target}/*")}),
                        ];
                        assert!(own.contains(resource), "{name}: {a} on {resource}");
                        if a == "s3:DeleteObject" {
                            assert_eq!(resource, &own[0], "{name}: deletes only its stall records");
                        }
                        continue;
                    }
                    "s3" => json!({"Fn::GetAtt": ["DeadLetterBucket", "Arn"]}),
                    _ => continue,
                };
                assert_eq!(resource, &want, "{name}: {a}");
            }
        }
        let mut want: BTreeSet<String> = expected[name].iter().map(|s| s.to_string()).collect();
        want.extend(logs.iter().map(|s| s.to_string()));
        assert_eq!(actions, want, "{name}: exactly its function's actions");
    }
    // The writer may only PutRecord on the stream: no other Kinesis action anywhere in its role.
    let writer_kinesis: Vec<String> = statements(roles["KinesisWriterRole"])
        .iter()
        .flat_map(|s| as_list(&s["Action"]))
        .filter_map(|a| a.as_str().map(str::to_string))
        .filter(|a| a.starts_with("kinesis:"))
        .collect();
    assert_eq!(writer_kinesis, ["kinesis:PutRecord"]);
}

#[test]
fn the_templates_carry_what_moto_ignores() {
    // Checked in the template because moto's CloudFormation drops these properties.
    let core = decoded("core.yaml");
    let stream = &core["Resources"]["WriteStream"]["Properties"];
    assert_eq!(stream["StreamEncryption"]["EncryptionType"], "KMS");
    assert_eq!(stream["StreamEncryption"]["KeyId"], json!({"Ref": "StreamEncryptionKey"}));
    assert_eq!(core["Parameters"]["StreamEncryptionKey"]["Default"], "alias/aws/kinesis");
    assert_eq!(core["Parameters"]["RetentionHours"]["Default"], 168);
    assert_eq!(stream["ShardCount"], json!({"Ref": "ShardCount"}));
    let bucket = &core["Resources"]["DeadLetterBucket"];
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    let block = &bucket["Properties"]["PublicAccessBlockConfiguration"];
    for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block[k], true, "{k}");
    }
    assert_eq!(bucket["Properties"]["VersioningConfiguration"]["Status"], "Enabled");
    let policy = &core["Resources"]["DeadLetterBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");

    // The writers' stall metric (the name and dimension the stream-writer publishes) has an
    // alarm per writer, and the dead-letter alarm counts dead letters only: a stall record must
    // not page as a dead letter.
    for (alarm, function) in [
        ("DestinationStallAlarm", "${NamePrefix}-stream-writer-destination"),
        ("SourceStallAlarm", "${NamePrefix}-stream-writer-source"),
    ] {
        let p = &core["Resources"][alarm]["Properties"];
        assert_eq!(p["Namespace"], "InfluxLiveMigration", "{alarm}");
        assert_eq!(p["MetricName"], "StalledSeconds", "{alarm}");
        assert_eq!(
            p["Dimensions"],
            json!([{"Name": "FunctionName", "Value": {"Fn::Sub": function}}]),
            "{alarm}"
        );
        assert_eq!(p["Threshold"], json!({"Ref": "StallAlarmSeconds"}), "{alarm}");
        assert_eq!(p["TreatMissingData"], "notBreaching", "{alarm}");
    }
    let filters = &bucket["Properties"]["MetricsConfigurations"];
    assert_eq!(
        filters,
        &json!([{"Id": "DeadLetters", "Prefix": "dead-letters/"}, {"Id": "OnFailureBatches", "Prefix": "aws/lambda/"}])
    );
    assert_eq!(core["Resources"]["DeadLetterAlarm"]["Properties"]["Dimensions"][1]["Value"], "DeadLetters");

    let wiring = decoded("wiring.yaml");
    assert_eq!(wiring["Resources"]["Api"]["Properties"]["BinaryMediaTypes"], json!(["*/*"]));
    // Every read route streams (moto keeps the URI, not the transfer mode or the timeout), and
    // switching the mode deploys a new snapshot of the methods.
    assert_eq!(wiring["Parameters"]["ReadTransferMode"]["Default"], "STREAM");
    let mut reads = 0;
    for (name, r) in wiring["Resources"].as_object().unwrap() {
        let integration = &r["Properties"]["Integration"];
        let uri = integration["Uri"].to_string();
        if r["Type"] != "AWS::ApiGateway::Method" || !uri.contains("QueryRouterFunctionArn") {
            continue;
        }
        reads += 1;
        assert_eq!(integration["ResponseTransferMode"], json!({"Ref": "ReadTransferMode"}), "{name}");
        assert_eq!(
            integration["TimeoutInMillis"],
            json!({"Fn::If": ["StreamReads", 900000, 29000]}),
            "{name}"
        );
        assert!(
            uri.contains("2021-11-15/functions/${QueryRouterFunctionArn}/response-streaming-invocations"),
            "{name}: {uri}"
        );
    }
    assert_eq!(reads, 9, "every read route");
    let stage = &wiring["Resources"]["ApiStage"]["Properties"];
    assert_eq!(
        stage["DeploymentId"],
        json!({"Fn::If": ["StreamReads", {"Ref": "ApiDeploymentV3Stream"}, {"Ref": "ApiDeploymentV3Buffered"}]})
    );
    // Both mappings start at the dual-write start (AT_TIMESTAMP), TRIM_HORIZON without one.
    for m in ["SourceWriterMapping", "DestinationWriterMapping"] {
        let p = &wiring["Resources"][m]["Properties"];
        assert_eq!(
            p["StartingPosition"],
            json!({"Fn::If": ["HasDualWriteStart", "AT_TIMESTAMP", "TRIM_HORIZON"]})
        );
        assert_eq!(
            p["StartingPositionTimestamp"],
            json!({"Fn::If": ["HasDualWriteStart", {"Ref": "DualWriteStart"}, {"Ref": "AWS::NoValue"}]})
        );
    }
}

#[test]
fn deploy_dry_run_prints_every_call_and_changes_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let moto = rt.block_on(Moto::start());
    let run = script(
        "deploy.sh",
        &moto.env(),
        &[
            "--dry-run",
            "--prefix",
            "dry",
            "--source-url",
            "http://influx.internal:8086",
            "--destination-url",
            "https://dst.example:8086",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let calls: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("+ ")).collect();
    let find = |needle: &str| {
        calls
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no call with {needle:?} in:\n{}", run.stdout))
    };
    assert!(find("cloudformation create-stack --stack-name dry-core").contains("core.yaml"));
    // The build: arm64 is the default; the machines here have only the x86_64 Rust target and
    // the script says so.
    assert!(find("cargo lambda build --release").contains("--x86-64"));
    assert!(run.stdout.contains(
        "arm64 (Graviton) is the default, but the Rust target aarch64-unknown-linux-gnu is not installed"
    ));
    // Four deploys; the stream writer twice under two names with its two targets.
    let deploys: Vec<&&str> = calls.iter().filter(|l| l.contains("cargo lambda deploy")).collect();
    assert_eq!(deploys.len(), 4, "{deploys:?}");
    assert!(deploys[0].contains("--binary-name kinesis-writer") && deploys[0].contains("STREAM_NAME="));
    assert!(deploys[1].contains("--binary-name stream-writer") && deploys[1].contains("TARGET=source"));
    assert!(deploys[2].contains("--binary-name stream-writer") && deploys[2].contains("TARGET=destination"));
    assert!(
        deploys[3].contains("--binary-name query-router") && deploys[3].contains("SECRET_TTL_SECONDS=15")
    );
    // Reads stream by default: the router's mode and timeout, and the wiring's, from one flag.
    assert!(
        deploys[3].contains("RESPONSE_TRANSFER_MODE=STREAM") && deploys[3].contains("--timeout 900"),
        "{}",
        deploys[3]
    );
    assert!(
        find("create-stack --stack-name dry-wiring")
            .contains("ParameterKey=ReadTransferMode\\,ParameterValue=STREAM")
    );
    for d in &deploys {
        assert!(d.contains("--iam-role") && d.contains("RoleArn"), "role from the stack outputs: {d}");
    }
    assert!(find("put-function-concurrency").contains("--reserved-concurrent-executions 0"));
    assert!(find("cloudformation create-stack --stack-name dry-wiring").contains("wiring.yaml"));
    // The throttle comes before the wiring that creates the destination mapping.
    let pos = |needle: &str| calls.iter().position(|l| l.contains(needle)).unwrap();
    assert!(pos("put-function-concurrency") < pos("create-stack --stack-name dry-wiring"));
    // Nothing was created.
    assert_eq!(moto.aws_cli(&["cloudformation", "list-stacks"])["StackSummaries"], json!([]));
    assert_eq!(moto.aws_cli(&["lambda", "list-functions"])["Functions"], json!([]));

    // A deployment that cannot stream: both ends buffered, the router under API Gateway's 29 s.
    let mut args = vec!["--dry-run", "--prefix", "dry", "--read-transfer-mode", "BUFFERED"];
    args.extend([
        "--source-url",
        "http://influx.internal:8086",
        "--destination-url",
        "https://dst.example:8086",
    ]);
    let run = script("deploy.sh", &moto.env(), &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let router =
        run.stdout.lines().find(|l| l.contains("--binary-name query-router")).expect("router deploy");
    assert!(
        router.contains("RESPONSE_TRANSFER_MODE=BUFFERED") && router.contains("--timeout 29"),
        "{router}"
    );
    assert!(run.stdout.contains("ParameterKey=ReadTransferMode\\,ParameterValue=BUFFERED"));
    let run = script("deploy.sh", &moto.env(), &["--dry-run", "--read-transfer-mode", "stream"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("--read-transfer-mode must be STREAM or BUFFERED"), "{}", run.stderr);
}

/// The statements of a policy document read through IAM. moto returns the document as a Python
/// literal (single quotes, `None` where a `Fn::If` chose `AWS::NoValue`), AWS as JSON; both are
/// read with Python's literal parser, and the `None`s dropped.
fn deployed_statements(doc: &Value) -> Vec<Value> {
    let parsed = match doc {
        Value::String(text) => {
            let out = Command::new(TestBed::get().venv_bin.join("python"))
                .args(["-c", "import ast,json,sys\nprint(json.dumps(ast.literal_eval(sys.argv[1])))"])
                .arg(text)
                .output()
                .expect("run python");
            assert!(out.status.success(), "policy document {text}: {}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        }
        other => other.clone(),
    };
    parsed["Statement"].as_array().unwrap().iter().filter(|s| !s.is_null()).cloned().collect()
}

/// One stack of a `describe-stacks` answer.
fn stack<'a>(stacks: &'a Value, name: &str) -> &'a Value {
    stacks["Stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["StackName"] == name)
        .unwrap_or_else(|| panic!("no stack {name}"))
}

fn outputs(stack: &Value) -> BTreeMap<String, String> {
    stack["Outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (o["OutputKey"].as_str().unwrap().to_string(), o["OutputValue"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn deploy_creates_every_resource_in_moto_and_a_rerun_keeps_the_operators_changes() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let moto = rt.block_on(Moto::start());
    let conf = rt.block_on(moto.sdk_config());
    let lambda = aws_sdk_lambda::Client::new(&conf);
    let dir = tempfile::tempdir().unwrap();
    stage_bootstraps(dir.path()).expect("stage the function binaries");
    let lambda_dir = dir.path().to_string_lossy().into_owned();
    let prefix = "mig";
    let (src_url, dst_url) =
        ("http://10.0.0.5:8086", "https://abc.us-east-1.timestream-influxdb.amazonaws.com:8086");

    let run = script(
        "deploy.sh",
        &moto.env(),
        &[
            "--prefix",
            prefix,
            "--skip-build",
            "--lambda-dir",
            &lambda_dir,
            "--source-url",
            src_url,
            "--destination-url",
            dst_url,
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("stack mig-core: created") && run.stdout.contains("stack mig-wiring: created")
    );
    let stacks = moto.aws_cli(&["cloudformation", "describe-stacks"]);
    let core = outputs(stack(&stacks, "mig-core"));
    let wiring = outputs(stack(&stacks, "mig-wiring"));

    // Kinesis: the stream, its shards and retention (its encryption: see the template test).
    let kinesis = aws_sdk_kinesis::Client::new(&conf);
    let s = rt.block_on(kinesis.describe_stream_summary().stream_name(&core["StreamName"]).send()).unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.retention_period_hours(), 168);
    assert_eq!(s.open_shard_count(), 2);
    assert_eq!(s.stream_arn(), core["StreamArn"]);

    // IAM: the four roles, trusted by Lambda, with inline policies that pass the same rule.
    let roles = moto.aws_cli(&["iam", "list-roles"]);
    for (key, policy_name) in [
        ("KinesisWriterRoleArn", "kinesis-writer"),
        ("SourceWriterRoleArn", "stream-writer-source"),
        ("DestinationWriterRoleArn", "stream-writer-destination"),
        ("QueryRouterRoleArn", "query-router"),
    ] {
        let name = core[key].rsplit('/').next().unwrap().to_string();
        let role = roles["Roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["RoleName"] == name.as_str())
            .unwrap_or_else(|| panic!("no role {name}"));
        assert_eq!(
            role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
        let listed = moto.aws_cli(&["iam", "list-role-policies", "--role-name", &name]);
        assert_eq!(listed["PolicyNames"], json!([policy_name]), "{name}: one inline policy");
        let doc =
            moto.aws_cli(&["iam", "get-role-policy", "--role-name", &name, "--policy-name", policy_name]);
        let sts = deployed_statements(&doc["PolicyDocument"]);
        assert!(sts.len() >= 3, "{name}: {sts:?}");
        for st in &sts {
            if st.get("Resource").is_none() {
                // moto resolves the Ref to the secret it skipped to nothing and drops the key.
                assert_eq!(st["Action"], "secretsmanager:GetSecretValue", "{name}: {st}");
                continue;
            }
            assert_specific(&name, st);
        }
    }

    // Lambda: four functions, each with its role and environment; the stream writer twice.
    let function = |name: &str| {
        let f = rt.block_on(lambda.get_function_configuration().function_name(name).send()).unwrap();
        let vars: BTreeMap<String, String> = f
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        json!({
            "Role": f.role(),
            "Environment": {"Variables": vars},
            "Runtime": f.runtime().map(|r| r.as_str()),
            "FunctionArn": f.function_arn(),
            "Timeout": f.timeout(),
        })
    };
    let secret_id = format!("{prefix}/endpoints");
    let expect_env = [
        (
            "KinesisWriter",
            json!({"SECRET_ID": secret_id, "SECRET_TTL_SECONDS": "15", "STREAM_NAME": core["StreamName"], "PARTITION_KEY_MODE": "random"}),
        ),
        (
            "SourceWriter",
            json!({"SECRET_ID": secret_id, "SECRET_TTL_SECONDS": "15", "TARGET": "source", "DEAD_LETTER_BUCKET": core["DeadLetterBucketName"]}),
        ),
        (
            "DestinationWriter",
            json!({"SECRET_ID": secret_id, "SECRET_TTL_SECONDS": "15", "TARGET": "destination", "DEAD_LETTER_BUCKET": core["DeadLetterBucketName"]}),
        ),
        (
            "QueryRouter",
            json!({"SECRET_ID": secret_id, "SECRET_TTL_SECONDS": "15", "RESPONSE_TRANSFER_MODE": "STREAM"}),
        ),
    ];
    let mut arns = BTreeMap::new();
    for (key, env) in &expect_env {
        let name = &core[&format!("{key}FunctionName")];
        let f = function(name);
        assert_eq!(f["Role"], core[&format!("{key}RoleArn")].as_str(), "{name}");
        assert_eq!(f["Environment"]["Variables"], *env, "{name}");
        assert_eq!(f["Runtime"], "provided.al2023");
        // A streamed read may run as long as API Gateway streams (15 minutes); the Kinesis
        // writer stops before API Gateway's 29 s.
        let timeout = match *key {
            "KinesisWriter" => 29,
            "QueryRouter" => 900,
            _ => 300,
        };
        assert_eq!(f["Timeout"], timeout, "{name}");
        arns.insert(*key, f["FunctionArn"].as_str().unwrap().to_string());
    }
    let dest_fn = core["DestinationWriterFunctionName"].clone();
    let concurrency = |lambda: &aws_sdk_lambda::Client| {
        rt.block_on(lambda.get_function_concurrency().function_name(&dest_fn).send())
            .unwrap()
            .reserved_concurrent_executions()
    };
    assert_eq!(concurrency(&lambda), Some(0), "the destination writer is created throttled");

    // The mappings: both writers, from the core stack's creation, nothing that can drop a record.
    let created = stack(&stacks, "mig-core")["CreationTime"].as_str().unwrap().to_string();
    let created =
        time::OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339).unwrap();
    let params = stack(&stacks, "mig-wiring")["Parameters"].clone();
    let start = params.as_array().unwrap().iter().find(|p| p["ParameterKey"] == "DualWriteStart").unwrap()["ParameterValue"].clone();
    assert_eq!(start, json!(created.unix_timestamp().to_string()));
    let esms = moto.aws_cli(&["lambda", "list-event-source-mappings"])["EventSourceMappings"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(esms.len(), 2);
    let mut uuids = BTreeSet::new();
    for key in ["SourceWriter", "DestinationWriter"] {
        let m = esms
            .iter()
            .find(|m| m["FunctionArn"] == arns[key].as_str())
            .unwrap_or_else(|| panic!("no mapping for {key}"));
        assert_eq!(m["EventSourceArn"], core["StreamArn"].as_str());
        assert_eq!(m["StartingPosition"], "AT_TIMESTAMP");
        assert_eq!(m["MaximumRetryAttempts"], -1);
        assert_eq!(m["MaximumRecordAgeInSeconds"], -1);
        assert_eq!(m["BisectBatchOnFunctionError"], true);
        assert_eq!(m["FunctionResponseTypes"], json!(["ReportBatchItemFailures"]));
        assert_eq!(m["DestinationConfig"]["OnFailure"]["Destination"], core["DeadLetterBucketArn"].as_str());
        assert_eq!(m["State"], "Enabled");
        uuids.insert(m["UUID"].as_str().unwrap().to_string());
    }

    // S3: the dead-letter bucket, encrypted (its public access block, versioning and TLS-only
    // policy: see the template test).
    let s3 = rt.block_on(moto.s3());
    let enc = rt.block_on(s3.get_bucket_encryption().bucket(&core["DeadLetterBucketName"]).send()).unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str(), "AES256");

    // API Gateway: every route, IAM-authorised, to the right function.
    let api = &wiring["RestApiId"];
    let resources = moto.aws_cli(&["apigateway", "get-resources", "--rest-api-id", api])["items"]
        .as_array()
        .unwrap()
        .clone();
    let route = |path: &str, method: &str| -> Value {
        let r = resources.iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("no resource {path}"));
        r["resourceMethods"][method].clone()
    };
    let routes = [
        ("/api/v2/write", "POST", "KinesisWriter"),
        ("/write", "POST", "KinesisWriter"),
        ("/api/v2/query", "POST", "QueryRouter"),
        ("/query", "GET", "QueryRouter"),
        ("/query", "POST", "QueryRouter"),
        ("/api/v2/buckets", "GET", "QueryRouter"),
        ("/api/v2/orgs", "GET", "QueryRouter"),
        ("/api/v2/dbrps", "GET", "QueryRouter"),
        ("/health", "GET", "QueryRouter"),
        ("/ping", "GET", "QueryRouter"),
        ("/ping", "HEAD", "QueryRouter"),
    ];
    for (path, method, target) in routes {
        let m = route(path, method);
        assert_eq!(m["authorizationType"], "AWS_IAM", "{method} {path}");
        assert_eq!(m["methodIntegration"]["type"], "AWS_PROXY", "{method} {path}");
        let uri = m["methodIntegration"]["uri"].as_str().unwrap();
        // Reads stream: API Gateway invokes the router with InvokeWithResponseStream.
        let (version, action) = match target {
            "QueryRouter" => ("2021-11-15", "response-streaming-invocations"),
            _ => ("2015-03-31", "invocations"),
        };
        assert!(
            uri.ends_with(&format!("/{version}/functions/{}/{action}", arns[target])),
            "{method} {path}: {uri}"
        );
    }
    assert!(route("/api/v2/write", "GET").is_null(), "no read method on the write route");
    // Each function may be invoked by API Gateway for its own routes only.
    let policy = |key: &str| -> Vec<String> {
        let p = rt.block_on(lambda.get_policy().function_name(&arns[key]).send()).unwrap();
        let doc: Value = serde_json::from_str(p.policy().unwrap()).unwrap();
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["Condition"]["ArnLike"]["AWS:SourceArn"]
                    .as_str()
                    .unwrap()
                    .rsplit(api.as_str())
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let mut writer = policy("KinesisWriter");
    writer.sort();
    assert_eq!(writer, ["/*/POST/api/v2/write", "/*/POST/write"]);
    let mut router = policy("QueryRouter");
    router.sort();
    assert_eq!(
        router,
        ["/*/*/ping", "/*/*/query", "/*/GET/api/v2/*", "/*/GET/health", "/*/POST/api/v2/query"]
    );
    assert_eq!(wiring["GatewayPathPrefix"], "/live");

    // The secret (moto skips AWS::SecretsManager::Secret): created through Secrets Manager from
    // the template's own properties, then read back as the shape the functions parse.
    let t = decoded("core.yaml");
    let vars: BTreeMap<&str, String> = [
        ("NamePrefix", prefix.to_string()),
        ("SourceUrl", src_url.to_string()),
        ("DestinationUrl", dst_url.to_string()),
    ]
    .into_iter()
    .collect();
    let props = &t["Resources"]["EndpointSecret"]["Properties"];
    let name = sub(props["Name"]["Fn::Sub"].as_str().unwrap(), &vars);
    assert_eq!(name, secret_id, "the functions' SECRET_ID names the template's secret");
    let value = sub(props["SecretString"]["Fn::Sub"].as_str().unwrap(), &vars);
    let secrets = aws_sdk_secretsmanager::Client::new(&conf);
    rt.block_on(secrets.create_secret().name(&name).secret_string(&value).send()).unwrap();
    let back = rt.block_on(secrets.get_secret_value().secret_id(&name).send()).unwrap();
    let secret = shared::secret::EndpointSecret::parse(&name, back.secret_string().unwrap()).unwrap();
    assert_eq!(secret.read, shared::secret::Role::Source, "created with reads on the source");
    assert_eq!(secret.source.base(), src_url);
    assert_eq!(secret.destination.base(), dst_url);

    // The destination lag alarm (moto skips AWS::CloudWatch::Alarm): created through CloudWatch
    // from the template's properties, then checked there.
    let a = &t["Resources"]["DestinationLagAlarm"]["Properties"];
    let alarm_name = sub(a["AlarmName"]["Fn::Sub"].as_str().unwrap(), &vars);
    assert_eq!(alarm_name, core["DestinationLagAlarmName"]);
    let dim_value = sub(a["Dimensions"][0]["Value"]["Fn::Sub"].as_str().unwrap(), &vars);
    let actions_flag =
        if a["ActionsEnabled"] == false { "--no-actions-enabled" } else { "--actions-enabled" };
    moto.aws_cli(&[
        "cloudwatch",
        "put-metric-alarm",
        "--alarm-name",
        &alarm_name,
        "--namespace",
        a["Namespace"].as_str().unwrap(),
        "--metric-name",
        a["MetricName"].as_str().unwrap(),
        "--dimensions",
        &format!("Name={},Value={dim_value}", a["Dimensions"][0]["Name"].as_str().unwrap()),
        "--statistic",
        a["Statistic"].as_str().unwrap(),
        "--period",
        &a["Period"].to_string(),
        "--evaluation-periods",
        &a["EvaluationPeriods"].to_string(),
        "--datapoints-to-alarm",
        &a["DatapointsToAlarm"].to_string(),
        "--threshold",
        &t["Parameters"]["DestinationLagAlarmMilliseconds"]["Default"].to_string(),
        "--comparison-operator",
        a["ComparisonOperator"].as_str().unwrap(),
        "--treat-missing-data",
        a["TreatMissingData"].as_str().unwrap(),
        actions_flag,
    ]);
    let alarms =
        moto.aws_cli(&["cloudwatch", "describe-alarms", "--alarm-names", &alarm_name])["MetricAlarms"]
            .clone();
    let alarm = &alarms[0];
    assert_eq!(alarm["MetricName"], "IteratorAge");
    assert_eq!(alarm["Namespace"], "AWS/Lambda");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "FunctionName", "Value": dest_fn}]),
        "on the destination writer"
    );
    assert_eq!(alarm["TreatMissingData"], "breaching", "a silent unthrottled writer alarms");
    assert_eq!(alarm["ActionsEnabled"], false, "off while the writer starts throttled");

    // The CLI reads its names from the stack: unthrottle releases the writer; turning the
    // alarm's actions on needs CloudWatch's CBOR protocol, which moto does not serve, so that
    // part is a warning here.
    let cli = |args: &[&str]| {
        let out = Command::new(workspace_binary("influx-migration"))
            .args(args)
            .envs(moto.env())
            .env_remove("LIVE_LAG_SOURCE")
            .env_remove("INFLUX_SRC_TOKEN")
            .env_remove("INFLUX_DEST_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = cli(&["unthrottle", "--stack", "mig-core"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("did: removed the reserved concurrency of {dest_fn}")), "{stdout}");
    assert!(stderr.contains(&format!("EnableAlarmActions for alarm {alarm_name}")), "{stderr}");
    assert_eq!(concurrency(&lambda), None);
    let lag_file = dir.path().join("no-lag-yet.json");
    let (code, stdout, stderr) = cli(&[
        "status",
        "--stack",
        "mig-core",
        "--json",
        "--lag-source",
        &format!("file:{}", lag_file.display()),
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["deployment"]["stream"], core["StreamName"].as_str());
    assert_eq!(doc["deployment"]["secret"], secret_id.as_str());
    assert_eq!(doc["stream"]["retention_hours"], 168);
    assert_eq!(doc["destination_writer"]["throttle"]["state"], "unthrottled");
    assert_eq!(doc["destination_writer"]["mappings"].as_array().unwrap().len(), 1);
    assert_eq!(doc["read_endpoint"]["read"], "source");
    assert_eq!(doc["read_endpoint"]["host"], src_url);

    // A rerun: both stacks unchanged, the operator's unthrottle kept, the mappings the same.
    let again =
        script("deploy.sh", &moto.env(), &["--prefix", prefix, "--skip-build", "--lambda-dir", &lambda_dir]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("stack mig-core: already up to date"), "{}", again.stdout);
    assert!(again.stdout.contains("stack mig-wiring: already up to date"), "{}", again.stdout);
    assert!(again.stdout.contains("reserved concurrency as it is (none, unthrottled)"), "{}", again.stdout);
    assert_eq!(concurrency(&lambda), None);
    let esms = moto.aws_cli(&["lambda", "list-event-source-mappings"])["EventSourceMappings"]
        .as_array()
        .unwrap()
        .clone();
    let after: BTreeSet<String> = esms.iter().map(|m| m["UUID"].as_str().unwrap().to_string()).collect();
    assert_eq!(after, uuids);

    // The databases' URLs are fixed once the secret exists (a change would reset reads).
    let moved = script(
        "deploy.sh",
        &moto.env(),
        &[
            "--prefix",
            prefix,
            "--skip-build",
            "--lambda-dir",
            &lambda_dir,
            "--source-url",
            "http://elsewhere:8086",
        ],
    );
    assert_eq!(moved.code, 1);
    assert!(
        moved.stderr.contains("SourceUrl of mig-core is http://10.0.0.5:8086; it cannot change"),
        "{}",
        moved.stderr
    );

    // Teardown: refused without --confirm; then everything but the dead-letter bucket goes.
    let refused = script("teardown.sh", &moto.env(), &["--prefix", prefix]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("rerun with --confirm"), "{}", refused.stderr);
    assert_eq!(moto.aws_cli(&["lambda", "list-functions"])["Functions"].as_array().unwrap().len(), 4);
    let down = script("teardown.sh", &moto.env(), &["--prefix", prefix, "--confirm"]);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    assert_eq!(moto.aws_cli(&["lambda", "list-functions"])["Functions"], json!([]));
    assert_eq!(moto.aws_cli(&["lambda", "list-event-source-mappings"])["EventSourceMappings"], json!([]));
    let streams = rt.block_on(kinesis.list_streams().send()).unwrap();
    assert!(streams.stream_names().is_empty(), "{:?}", streams.stream_names());
    assert!(
        down.stdout.contains(&format!("the dead-letter bucket {} is kept", core["DeadLetterBucketName"])),
        "{}",
        down.stdout
    );
}
