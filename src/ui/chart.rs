//! A small per-account chart, drawn on the server as SVG: files per day as bars, result rows
//! per day as a line, over the last 14 days. No script, no external image.

use crate::ledger::DayCount;
use maud::{html, Markup};

pub const DAYS: i64 = 14;
const W: f64 = 280.0;
const H: f64 = 72.0;
const PAD: f64 = 14.0;

/// The first day shown, `YYYY-MM-DD` (today is the last).
pub fn since(today: chrono::NaiveDate) -> String {
    (today - chrono::Duration::days(DAYS - 1)).format("%Y-%m-%d").to_string()
}

pub fn render(account: &str, today: chrono::NaiveDate, counts: &[DayCount]) -> Markup {
    let days: Vec<(String, i64, i64)> = (0..DAYS)
        .map(|i| {
            let day = (today - chrono::Duration::days(DAYS - 1 - i)).format("%Y-%m-%d").to_string();
            let c = counts.iter().find(|c| c.day == day);
            (day, c.map_or(0, |c| c.files), c.map_or(0, |c| c.rows))
        })
        .collect();
    let max_files = days.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let max_rows = days.iter().map(|d| d.2).max().unwrap_or(0).max(1) as f64;
    let total_files: i64 = days.iter().map(|d| d.1).sum();
    let total_rows: i64 = days.iter().map(|d| d.2).sum();
    let slot = W / DAYS as f64;
    let plot = H - PAD;
    let points: Vec<String> = days
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{:.1},{:.1}", i as f64 * slot + slot / 2.0, plot - d.2 as f64 / max_rows * (plot - 4.0)))
        .collect();
    let label = format!(
        "Account {account}: {total_files} files and {total_rows} rows in the last {DAYS} days (bars: files per day, line: rows per day)"
    );
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(label) {
            title { (label) }
            line x1="0" y1=(plot) x2=(W) y2=(plot) stroke="#999" stroke-width="1" {}
            @for (i, (day, files, rows)) in days.iter().enumerate() {
                @let h = *files as f64 / max_files * (plot - 4.0);
                rect class="bar" x=(format!("{:.1}", i as f64 * slot + 2.0)) y=(format!("{:.1}", plot - h))
                    width=(format!("{:.1}", slot - 4.0)) height=(format!("{:.1}", h)) fill="#4a7fb5" {
                    title { (day) ": " (files) " files, " (rows) " rows" }
                }
            }
            polyline points=(points.join(" ")) fill="none" stroke="#d2691e" stroke-width="1.5" {}
            text x="0" y=(H - 2.0) font-size="9" fill="#555" { (days[0].0) }
            text x=(W) y=(H - 2.0) font-size="9" fill="#555" text-anchor="end" { (days[DAYS as usize - 1].0) }
        }
    }
}
