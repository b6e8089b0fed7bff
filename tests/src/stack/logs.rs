//! The local stack's logs, kept where a person can read them after the stack is gone, and the
//! first error in each, so that a failing run says where to look.

use std::path::{Path, PathBuf};

/// One log kept: where it is now, and its first error line if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptLog {
    pub name: String,
    pub path: PathBuf,
    pub first_error: Option<String>,
}

/// What marks a line as an error in the logs the stack's processes write: a Rust panic, a JSON
/// log record at level ERROR (the functions), influxd's `lvl=error`, a Python traceback (moto),
/// tracing's text format (cargo lambda watch), and the supervisor's note that an instance exited.
const ERROR_MARKS: &[&str] = &[
    "panicked at",
    "\"level\":\"ERROR\"",
    "lvl=error",
    "Traceback (most recent call last)",
    " ERROR ",
    "=== local stack:",
];

/// The longest part of an error line shown.
const SHOWN_CHARS: usize = 400;

/// The first line of `text` that is an error, cut to a readable length.
pub fn first_error(text: &str) -> Option<String> {
    let line = text.lines().find(|l| ERROR_MARKS.iter().any(|m| l.contains(m)))?;
    let line = line.trim();
    Some(match line.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    })
}

/// Copies each `(name, file)` into `dir` as `<name>` (a name may hold one `/`, a folder), and
/// reads its first error. A file that does not exist (a process that never started) is skipped.
pub fn keep(files: &[(String, PathBuf)], dir: &Path) -> std::io::Result<Vec<KeptLog>> {
    let mut kept = Vec::new();
    for (name, file) in files {
        let Ok(text) = std::fs::read(file) else { continue };
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &text)?;
        kept.push(KeptLog {
            name: name.clone(),
            path,
            first_error: first_error(&String::from_utf8_lossy(&text)),
        });
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_of_each_kind_of_log_is_found() {
        let function = "{\"level\":\"INFO\",\"message\":\"ready\"}\n\
                        thread 'main' panicked at lambda_runtime-1.5.0/src/types.rs:176:\n\
                        {\"level\":\"ERROR\",\"message\":\"later\"}\n";
        assert_eq!(
            first_error(function).as_deref(),
            Some("thread 'main' panicked at lambda_runtime-1.5.0/src/types.rs:176:")
        );
        let influxd = "ts=1 lvl=warn msg=slow\nts=2 lvl=error msg=\"write failed\"\n";
        assert_eq!(first_error(influxd).as_deref(), Some("ts=2 lvl=error msg=\"write failed\""));
        let json = "{\"level\":\"WARN\"}\n{\"level\":\"ERROR\",\"fields\":{\"message\":\"x\"}}\n";
        assert_eq!(
            first_error(json).as_deref(),
            Some("{\"level\":\"ERROR\",\"fields\":{\"message\":\"x\"}}")
        );
        assert_eq!(first_error("all fine\nnothing here\n"), None);
    }

    #[test]
    fn a_long_error_line_is_cut() {
        let line = format!("panicked at {}", "x".repeat(2_000));
        let shown = first_error(&line).unwrap();
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn logs_are_copied_under_their_names_and_missing_ones_skipped() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let a = src.path().join("a.log");
        std::fs::write(&a, "ok\n=== local stack: instance 0 of w exited (signal: 9); replaced ===\n")
            .unwrap();
        let files =
            vec![("writer/a.log".to_string(), a), ("gone".to_string(), src.path().join("never-written.log"))];
        let kept = keep(&files, out.path()).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, out.path().join("writer/a.log"));
        assert_eq!(
            std::fs::read_to_string(&kept[0].path).unwrap(),
            std::fs::read_to_string(&files[0].1).unwrap()
        );
        assert!(kept[0].first_error.as_deref().unwrap().contains("exited (signal: 9)"));
    }
}
