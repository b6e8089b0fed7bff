//! The workspace's own promises about its dependencies, read from `Cargo.lock`.

use std::collections::BTreeMap;

use testbed::TestBed;

/// Every package of the lock file with the versions it is locked at.
fn locked_versions(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            versions.entry(n).or_default().push(v.trim_matches('"').to_string());
        }
    }
    versions
}

/// Regression: aws-sdk-cloudformation 1.117 pulled a second set of five smithy crates (older
/// aws-smithy-http, -json, -query, -schema, -xml), built twice on every cold build.
#[test]
fn one_version_of_each_aws_crate() {
    let path = TestBed::repo_root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let versions = locked_versions(&lock);
    assert!(versions.contains_key("aws-sdk-kinesis"), "the lock file was read: {versions:?}");
    let doubled: Vec<String> = versions
        .iter()
        .filter(|(name, v)| name.starts_with("aws") && v.len() > 1)
        .map(|(name, v)| format!("{name} {}", v.join(", ")))
        .collect();
    assert!(doubled.is_empty(), "AWS crates locked at more than one version: {doubled:#?}");
}

#[test]
fn the_lock_file_reader_sees_every_version() {
    let lock = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"a\"\nversion = \"2.0.0\"\nsource = \"x\"\n\n[[package]]\nname = \"b\"\nversion = \"0.1.0\"\n";
    let v = locked_versions(lock);
    assert_eq!(v["a"], ["1.0.0", "2.0.0"]);
    assert_eq!(v["b"], ["0.1.0"]);
}
