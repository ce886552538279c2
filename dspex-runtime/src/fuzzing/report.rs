//! Target `report_log`: the optimization report's readers, on whatever file `dspex report` is
//! pointed at — a job's JSONL log, or GEPA's saved state. Reading never panics, and a page made
//! from what was read plots every finite trial exactly once, runs no script, and lets no text
//! of the file forge markup (a `data-trial` attribute in a string stays text).

use crate::optimize::RunLog;
use crate::optimize::report::render;

/// Checks both readers on `data` (UTF-8 only: the reports read text files).
pub fn report_log(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err((line, message)) = RunLog::parse(text) {
        assert!(line >= 1 && !message.is_empty());
    }
    let logs = [RunLog::parse(text).ok(), RunLog::from_gepa_state(text).ok()];
    for log in logs.into_iter().flatten() {
        let page = render(&log, "fuzz");
        let finite = log.trials.iter().filter(|t| t.score.is_finite()).count();
        assert_eq!(
            page.matches("data-trial=\"").count(),
            finite,
            "every finite trial is one point"
        );
        assert!(!page.contains("<script"), "the page runs nothing");
    }
}
