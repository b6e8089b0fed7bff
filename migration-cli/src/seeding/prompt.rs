//! The YES prompts of AWS's script (`--full` without `--confirm-full`, an S3 bucket owned by
//! another account without `--allow-unowned-s3-bucket`).
//!
//! The question is read from stdin. Without a terminal on stdin (CI, cron, pipes) nobody can
//! answer, so the prompt fails at once with a message naming the flag that confirms.

use std::io::{BufRead, IsTerminal, Write};

/// What the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
}

/// Why no answer could be had.
#[derive(Debug, thiserror::Error)]
#[error("{what} needs confirmation, but standard input is not a terminal: pass {flag} to confirm")]
pub struct NoTerminal {
    pub what: String,
    pub flag: String,
}

/// Prints `warning` (wrapped at 60 columns, as the script does) and asks for YES.
pub fn confirm(warning: &str, question: &str, what: &str, flag: &str) -> Result<Answer, NoTerminal> {
    if !std::io::stdin().is_terminal() {
        return Err(NoTerminal { what: what.to_string(), flag: flag.to_string() });
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{}\n", wrap(warning, 60));
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    Ok(if line.trim() == "YES" { Answer::Yes } else { Answer::No })
}

/// Greedy word wrap.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        if line_len > 0 && line_len + 1 + word.len() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_and_width() {
        let w = wrap(
            "WARNING: if you proceed with full migration, then all tokens, users, buckets will be replaced",
            20,
        );
        assert!(w.lines().all(|l| l.len() <= 20), "{w}");
        assert_eq!(w.split_whitespace().count(), 15);
    }
}
