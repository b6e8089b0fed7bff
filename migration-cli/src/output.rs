//! What a live operation tells the operator: every check it made, every change it did, notes and
//! warnings — as lines while it runs, or as one JSON document at the end (`--json`).
//!
//! Checks have a verdict an operator can scan for: `ok`, `REFUSED` (a precondition does not
//! hold), `FORCED` (it did not hold and `--force` overrode it), `DIFFERS` (source and destination
//! disagree), `WARN` (holds, but needs attention soon), `unknown` (could not be told) and `-`
//! (plain information). Warnings always go to stderr as well, so a script reading the JSON on
//! stdout still surfaces them to a person.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::exit::Exit;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Refused,
    Forced,
    Differs,
    Warn,
    Unknown,
    Info,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Refused => "REFUSED",
            Verdict::Forced => "FORCED",
            Verdict::Differs => "DIFFERS",
            Verdict::Warn => "WARN",
            Verdict::Unknown => "unknown",
            Verdict::Info => "-",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    name: String,
    verdict: Verdict,
    detail: String,
}

/// The running report of one command.
#[derive(Debug)]
pub struct Output {
    command: &'static str,
    json: bool,
    checks: Vec<Check>,
    actions: Vec<String>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

impl Output {
    pub fn new(command: &'static str, json: bool) -> Output {
        Output {
            command,
            json,
            checks: Vec::new(),
            actions: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records (and, for people, prints) a check.
    pub fn check(&mut self, name: &str, verdict: Verdict, detail: impl Into<String>) {
        let detail = detail.into();
        if !self.json {
            println!("  {:<8} {name}: {detail}", verdict.label());
        }
        self.checks.push(Check { name: name.to_string(), verdict, detail });
    }

    /// Records a change the command made.
    pub fn did(&mut self, detail: impl Into<String>) {
        let detail = detail.into();
        if !self.json {
            println!("did: {detail}");
        }
        self.actions.push(detail);
    }

    /// Records a plain line of information (a heading, a hint).
    pub fn note(&mut self, detail: impl Into<String>) {
        let detail = detail.into();
        if !self.json {
            println!("{detail}");
        }
        self.notes.push(detail);
    }

    /// Prints a block of text for people only (tables); JSON carries the same data structured.
    pub fn text(&self, block: &str) {
        if !self.json {
            print!("{block}");
        }
    }

    /// A warning: always on stderr, and in the JSON document.
    pub fn warn(&mut self, detail: impl Into<String>) {
        let detail = detail.into();
        eprintln!("warning: {detail}");
        self.warnings.push(detail);
    }

    /// Checks that refused (not overridden).
    pub fn refusals(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Refused)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    /// Ends the command: prints the JSON document (`data`'s fields merged in) and returns `exit`.
    pub fn finish(self, exit: Exit, data: Value) -> Exit {
        if self.json {
            println!("{}", self.document(exit, data));
        }
        exit
    }

    fn document(&self, exit: Exit, data: Value) -> Value {
        let mut doc = Map::new();
        doc.insert("command".into(), json!(self.command));
        doc.insert("exit_code".into(), json!(exit.code()));
        doc.insert("outcome".into(), json!(outcome(exit)));
        doc.insert("checks".into(), json!(self.checks));
        doc.insert("actions".into(), json!(self.actions));
        doc.insert("notes".into(), json!(self.notes));
        doc.insert("warnings".into(), json!(self.warnings));
        if let Value::Object(fields) = data {
            for (k, v) in fields {
                doc.insert(k, v);
            }
        }
        Value::Object(doc)
    }
}

fn outcome(exit: Exit) -> &'static str {
    match exit {
        Exit::Success => "success",
        Exit::Failure => "failure",
        Exit::Usage => "usage",
        Exit::Differences => "differences",
        Exit::Refused => "refused",
    }
}

/// `950 ms`, `12.3 s`, `4 min 5 s`, `3 h 20 min`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_document_holds_checks_actions_and_the_commands_data() {
        let mut out = Output::new("throttle", true);
        out.check("destination writer", Verdict::Info, "unthrottled");
        out.did("set reserved concurrency 0 on fn");
        out.check("lag", Verdict::Refused, "unknown");
        let doc = out.document(Exit::Refused, json!({"function": "fn", "changed": true}));
        assert_eq!(doc["command"], "throttle");
        assert_eq!(doc["exit_code"], 4);
        assert_eq!(doc["outcome"], "refused");
        assert_eq!(doc["checks"][0]["verdict"], "info");
        assert_eq!(doc["checks"][1]["verdict"], "refused");
        assert_eq!(doc["actions"][0], "set reserved concurrency 0 on fn");
        assert_eq!(doc["function"], "fn");
        assert_eq!(doc["changed"], true);
    }

    #[test]
    fn refusals_list_only_refused_checks() {
        let mut out = Output::new("cutover", true);
        out.check("a", Verdict::Ok, "fine");
        out.check("b", Verdict::Refused, "throttled");
        out.check("c", Verdict::Forced, "overridden");
        assert_eq!(out.refusals(), vec!["b: throttled".to_string()]);
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(Duration::from_millis(950)), "950 ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4 min 5 s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 20 * 60)), "3 h 20 min");
    }
}
