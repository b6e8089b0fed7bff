//! The live migration's report: what clients were told vs what the destination holds, failed
//! reads, the time of each phase, and the destination lag over time (an SVG chart and a terminal
//! sparkline).

use std::fmt::Write as _;
use std::time::Duration;

/// Everything the report says.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub phases: Vec<(String, Duration)>,
    pub loaded_points: u64,
    pub acknowledged_points: u64,
    pub present_at_destination: u64,
    pub present_at_source: u64,
    pub missing_at_destination: Vec<String>,
    pub missing_at_source: Vec<String>,
    pub wrong_values: Vec<String>,
    pub write_requests_ok: u64,
    pub write_requests_failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub reads_failed_during_cutover: u64,
    pub dead_letters: Vec<String>,
    /// The writer left pointing at the source: points acknowledged in all, how many by the
    /// source itself (before it was moved behind the gateway), how many are at the destination
    /// with equal values at the end.
    pub forgotten_acknowledged: u64,
    pub forgotten_direct: u64,
    pub forgotten_at_destination: u64,
    /// What the operations said about it: status's finding, cutover's refusal, repair's result.
    pub bypass: Vec<String>,
    /// Whether status named it and cutover refused while it wrote to the source.
    pub bypass_detected: bool,
    /// (seconds since the destination mapping started, IteratorAge ms)
    pub lag: Vec<(f64, u64)>,
    /// The source writer's IteratorAge over the run, ms: (largest, once the writers ran).
    pub source_lag_max_ms: Option<u64>,
    /// Events on the same time axis as `lag` (e.g. "unthrottle", "cutover").
    pub marks: Vec<(f64, String)>,
    pub notes: Vec<String>,
    /// Tasks, checks and rules through the handovers (issue 12); `None` when the run did not
    /// get that far, which is not clean.
    pub scheduled: Option<ScheduledReport>,
}

/// What became of the scheduled work: handed over at the cutover, back at the rollback, over
/// again at the second cutover.
#[derive(Debug, Clone, Default)]
pub struct ScheduledReport {
    /// What each handover said, in order.
    pub handovers: Vec<String>,
    pub runs_replayed: u64,
    /// Downsampled windows compared value by value with what the raw points give, and those the
    /// destination holds otherwise (a loss).
    pub derived_compared: usize,
    pub derived_differing: Vec<String>,
    /// Windows the source's own runs summed in part (read before the source writer delivered
    /// their points); the destination holds them recomputed. Reported, not a loss.
    pub source_read_early: Vec<String>,
    pub paging: crate::scenario::scheduled::Paging,
    /// Points the paused task wrote, anywhere.
    pub paused_task_points: usize,
}

impl ScheduledReport {
    pub fn is_clean(&self) -> bool {
        self.derived_compared > 0
            && self.derived_differing.is_empty()
            && self.paging.incidents > 0
            && self.paging.notified_once == self.paging.incidents
            && self.paging.duplicates.is_empty()
            && self.paging.from_non_owner.is_empty()
            && self.paused_task_points == 0
    }
}

impl Report {
    /// Whether the migration kept every promise.
    pub fn is_clean(&self) -> bool {
        self.missing_at_destination.is_empty()
            && self.missing_at_source.is_empty()
            && self.wrong_values.is_empty()
            && self.reads_failed_during_cutover == 0
            && self.present_at_destination == self.acknowledged_points
            && self.bypass_detected
            && self.forgotten_at_destination == self.forgotten_acknowledged
            && self.scheduled.as_ref().is_some_and(ScheduledReport::is_clean)
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "live migration report");
        let _ = writeln!(s, "=====================");
        let _ = writeln!(s, "points loaded into the source before the migration: {}", self.loaded_points);
        let _ =
            writeln!(s, "points acknowledged to clients during the migration: {}", self.acknowledged_points);
        let _ = writeln!(
            s,
            "  present at the destination with equal values:      {}",
            self.present_at_destination
        );
        let _ =
            writeln!(s, "  present at the source with equal values:           {}", self.present_at_source);
        let _ = writeln!(
            s,
            "  missing at the destination: {}   missing at the source: {}   wrong values: {}",
            self.missing_at_destination.len(),
            self.missing_at_source.len(),
            self.wrong_values.len()
        );
        let _ = writeln!(
            s,
            "write requests: {} acknowledged, {} refused or failed",
            self.write_requests_ok, self.write_requests_failed
        );
        let _ = writeln!(
            s,
            "reads: {} answered, {} failed ({} during the cutover)",
            self.reads_ok, self.reads_failed, self.reads_failed_during_cutover
        );
        let _ = writeln!(
            s,
            "a writer left pointing at the source: {} points acknowledged ({} by the source itself, before it was moved behind the gateway)",
            self.forgotten_acknowledged, self.forgotten_direct
        );
        let _ = writeln!(
            s,
            "  present at the destination with equal values:      {}",
            self.forgotten_at_destination
        );
        for b in &self.bypass {
            let _ = writeln!(s, "  {b}");
        }
        match &self.scheduled {
            Some(w) => {
                let p = &w.paging;
                let _ = writeln!(
                    s,
                    "scheduled work (a downsampling task, a threshold check and its paging rule), owned by one database at a time:"
                );
                for h in &w.handovers {
                    let _ = writeln!(s, "  {h}");
                }
                let _ = writeln!(s, "  task runs replayed at the handovers: {}", w.runs_replayed);
                let _ = writeln!(
                    s,
                    "  downsampled windows compared value by value with what the raw points give: {}, differing at the destination: {}",
                    w.derived_compared,
                    w.derived_differing.len()
                );
                for d in w.derived_differing.iter().take(5) {
                    let _ = writeln!(s, "    {d}");
                }
                if !w.source_read_early.is_empty() {
                    let _ = writeln!(
                        s,
                        "  the source's own runs summed {} window(s) before their points reached it (the destination holds them recomputed):",
                        w.source_read_early.len()
                    );
                    for d in w.source_read_early.iter().take(3) {
                        let _ = writeln!(s, "    {d}");
                    }
                }
                let _ = writeln!(
                    s,
                    "  incidents: {}, notified exactly once: {}, duplicates: {}, missed: {}, from the database not owning: {} ({} notification(s) received)",
                    p.incidents,
                    p.notified_once,
                    p.duplicates.len(),
                    p.missed.len(),
                    p.from_non_owner.len(),
                    p.received
                );
                for d in p.from_non_owner.iter().take(5) {
                    let _ = writeln!(s, "    {d}");
                }
                let _ = writeln!(s, "  points written by the paused task: {}", w.paused_task_points);
            }
            None => {
                let _ = writeln!(s, "scheduled work: not checked (the run stopped before)");
            }
        }
        let _ = writeln!(s, "dead-letter records: {}", self.dead_letters.len());
        for d in &self.dead_letters {
            let _ = writeln!(s, "  {d}");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "phases:");
        for (name, d) in &self.phases {
            let _ = writeln!(s, "  {name:<40} {:>8.1} s", d.as_secs_f64());
        }
        let _ = writeln!(s);
        let max = self.lag.iter().map(|(_, v)| *v).max().unwrap_or(0);
        let _ = writeln!(s, "destination lag (IteratorAge), max {:.1} s:", max as f64 / 1000.0);
        let _ = writeln!(s, "  {}", sparkline(&self.lag, 72));
        if let Some(ms) = self.source_lag_max_ms {
            let _ = writeln!(s, "source lag (IteratorAge), max {:.1} s", ms as f64 / 1000.0);
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "verdict: {}",
            if self.is_clean() {
                "no acknowledged write lost, no read failed during the cutover"
            } else {
                "PROBLEMS FOUND (see above)"
            }
        );
        s
    }
}

/// A one-line chart of `points` in `width` cells.
pub fn sparkline(points: &[(f64, u64)], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if points.is_empty() {
        return "(no data)".into();
    }
    let t_end = points.last().map(|p| p.0).unwrap_or(0.0).max(1e-9);
    let mut cells = vec![0u64; width];
    for (t, v) in points {
        let i = (((t / t_end) * (width as f64 - 1.0)).round() as usize).min(width - 1);
        cells[i] = cells[i].max(*v);
    }
    let max = cells.iter().copied().max().unwrap_or(0).max(1);
    cells.iter().map(|v| BARS[((*v as f64 / max as f64) * 7.0).round() as usize]).collect()
}

/// An SVG line chart of the lag over time, with a labelled vertical line at each mark.
pub fn svg_chart(points: &[(f64, u64)], marks: &[(f64, String)], title: &str) -> String {
    let (w, h, left, bottom, top, right) = (900.0, 360.0, 70.0, 40.0, 40.0, 20.0);
    let t_end = points.last().map(|p| p.0).unwrap_or(1.0).max(1.0);
    let v_max = (points.iter().map(|p| p.1).max().unwrap_or(0) as f64 / 1000.0).max(1.0);
    let x = |t: f64| left + (t / t_end) * (w - left - right);
    let y = |v: f64| h - bottom - (v / v_max) * (h - bottom - top);
    let mut path = String::new();
    for (i, (t, v)) in points.iter().enumerate() {
        let _ = write!(path, "{}{:.1},{:.1} ", if i == 0 { "M" } else { "L" }, x(*t), y(*v as f64 / 1000.0));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="24" font-size="15">{}</text>"#, left, escape(title));
    for i in 0..=4 {
        let v = v_max * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            w - right,
            y(v),
            y(v)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.1} s</text>"#,
            left - 6.0,
            y(v) + 4.0
        );
    }
    for i in 0..=5 {
        let t = t_end * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.0} s</text>"#,
            x(t),
            h - bottom + 18.0
        );
    }
    for (t, label) in marks.iter().filter(|(t, _)| *t >= 0.0 && *t <= t_end) {
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="4 3"/>"##,
            h - bottom,
            x = x(*t)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" fill="#c0392b">{}</text>"##,
            x(*t) + 4.0,
            top + 12.0,
            escape(label)
        );
    }
    let _ = writeln!(s, r##"<path d="{path}" fill="none" stroke="#1f6fb2" stroke-width="2"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time since the destination mapping started</text>"#,
        (left + w - right) / 2.0,
        h - 6.0
    );
    let _ = writeln!(s, "</svg>");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_maximum() {
        let s = sparkline(&[(0.0, 0), (1.0, 500), (2.0, 1000)], 3);
        assert_eq!(s, "▁▅█");
        assert_eq!(sparkline(&[], 10), "(no data)");
    }

    #[test]
    fn svg_has_a_path_through_every_point() {
        let svg = svg_chart(&[(0.0, 0), (10.0, 2000), (20.0, 0)], &[(5.0, "cutover".into())], "lag <test>");
        assert!(svg.starts_with("<svg"));
        let path = svg.lines().find(|l| l.starts_with("<path")).unwrap();
        assert_eq!(path.matches('M').count(), 1, "{path}");
        assert_eq!(path.matches('L').count(), 2, "{path}");
        assert!(svg.contains("lag &lt;test&gt;"));
        assert!(svg.contains(">cutover</text>"));
    }

    fn clean_scheduled() -> ScheduledReport {
        ScheduledReport {
            derived_compared: 10,
            paging: crate::scenario::scheduled::Paging {
                incidents: 3,
                notified_once: 3,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A run with nothing wrong: the forgotten writer found and repaired, scheduled work clean.
    fn clean_report() -> Report {
        Report {
            bypass_detected: true,
            forgotten_acknowledged: 10,
            forgotten_at_destination: 10,
            scheduled: Some(clean_scheduled()),
            ..Default::default()
        }
    }

    #[test]
    fn a_page_twice_a_missed_one_a_derived_difference_or_no_scheduled_work_check_is_not_clean() {
        let clean = clean_report();
        assert!(clean.is_clean());
        assert!(!Report { scheduled: None, ..clean.clone() }.is_clean(), "never checked is not clean");
        let with = |f: &dyn Fn(&mut ScheduledReport)| {
            let mut w = clean_scheduled();
            f(&mut w);
            Report { scheduled: Some(w), ..clean.clone() }
        };
        assert!(!with(&|w| w.paging.duplicates.push(5)).is_clean(), "paged twice");
        assert!(!with(&|w| w.paging.notified_once = 2).is_clean(), "an incident missed");
        assert!(!with(&|w| w.paging.from_non_owner.push("x".into())).is_clean());
        assert!(!with(&|w| w.derived_differing.push("x".into())).is_clean());
        assert!(!with(&|w| w.derived_compared = 0).is_clean(), "nothing compared proves nothing");
        assert!(!with(&|w| w.paused_task_points = 1).is_clean());
        // A partial sum the source's own run made is reported, and it is no loss.
        let early = with(&|w| {
            w.source_read_early.push("2026-01-01T00:00:05Z: the raw points sum to 3, source 2".into())
        });
        assert!(early.is_clean());
        assert!(
            early
                .render_text()
                .contains("the source's own runs summed 1 window(s) before their points reached it")
        );
        let text = with(&|w| w.paging.duplicates.push(5)).render_text();
        assert!(text.contains("duplicates: 1"), "{text}");
    }

    #[test]
    fn a_report_with_a_missing_point_is_not_clean() {
        let mut r = Report {
            acknowledged_points: 2,
            present_at_destination: 2,
            present_at_source: 2,
            ..clean_report()
        };
        assert!(r.is_clean());
        r.missing_at_destination.push("w0-1".into());
        assert!(!r.is_clean());
        assert!(r.render_text().contains("PROBLEMS FOUND"));
    }

    #[test]
    fn a_forgotten_writer_not_found_or_not_repaired_is_not_clean() {
        let clean = clean_report();
        assert!(clean.is_clean());
        let unseen = Report { bypass_detected: false, ..clean.clone() };
        assert!(!unseen.is_clean(), "status and cutover must have named it");
        let lost = Report { forgotten_at_destination: 9, ..clean };
        assert!(!lost.is_clean(), "one of its points is not at the destination");
        assert!(lost.render_text().contains("a writer left pointing at the source: 10 points acknowledged"));
    }
}
