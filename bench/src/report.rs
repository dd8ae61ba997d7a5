//! Figures and tables: percentiles, ratios to the floor and to rslock.

use super::*;

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Nearest-rank percentile of sorted durations (zero when empty).
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn mean(durations: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(durations.len()).ok().filter(|n| *n > 0)?;
    Some(durations.iter().sum::<Duration>() / n)
}

/// The headers of [`grant_cells`].
pub(crate) const GRANT_HEADERS: [&str; 6] = [
    "grants", "grants/s", "wait p50", "wait p99", "failed", "fail p50",
];

/// The cells every contended table starts with ([`GRANT_HEADERS`]): grants,
/// grants/s, wait p50 and p99, failed calls and how long those took (p50).
pub(crate) fn grant_cells(
    sorted_waits: &[Duration],
    sorted_failed: &[Duration],
    rate: f64,
) -> Vec<String> {
    vec![
        sorted_waits.len().to_string(),
        format!("{rate:.0}"),
        fmt_ms(percentile(sorted_waits, 0.50)),
        fmt_ms(percentile(sorted_waits, 0.99)),
        sorted_failed.len().to_string(),
        if sorted_failed.is_empty() {
            "-".to_owned()
        } else {
            fmt_ms(percentile(sorted_failed, 0.50))
        },
    ]
}

pub(crate) fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", ms(d))
}

/// One table row: the figures as text, plus the figures ratios are taken of.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) library: &'static str,
    pub(crate) setting: &'static str,
    pub(crate) cells: Vec<String>,
    pub(crate) keys: Vec<f64>,
}

/// Prints a table; `key_names` name the figures in `Row::keys`, each given as a
/// ratio to the floor row and to the rslock row of the same setting (else rslock's
/// defaults).
pub(crate) fn print_table(
    title: &str,
    headers: &[&str],
    key_names: &[&str],
    rows: &[Row],
    notes: &[String],
) {
    println!("\n== {title}");
    let floor = rows.iter().find(|r| r.library == "floor");
    let ratio_cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let rslock = rows
                .iter()
                .find(|r| r.library == "rslock" && r.setting == row.setting)
                .or_else(|| rows.iter().find(|r| r.library == "rslock"));
            key_names
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let value = row.keys.get(i).copied().unwrap_or(f64::NAN);
                    let to =
                        |other: Option<&Row>, name: &str| match other.and_then(|o| o.keys.get(i)) {
                            Some(base) if *base > 0.0 && value.is_finite() => {
                                format!("{} {name}", fmt_ratio(value / base))
                            }
                            _ => format!("- {name}"),
                        };
                    format!("{}, {}", to(floor, "floor"), to(rslock, "rslock"))
                })
                .collect()
        })
        .collect();
    let mut header: Vec<String> = vec!["library".into(), "setting".into()];
    header.extend(headers.iter().map(|h| (*h).to_owned()));
    header.extend(key_names.iter().map(|k| format!("{k} ratio")));
    let lines: Vec<Vec<String>> = rows
        .iter()
        .zip(&ratio_cells)
        .map(|(row, ratios)| {
            let mut line = vec![row.library.to_owned(), row.setting.to_owned()];
            line.extend(row.cells.iter().cloned());
            line.extend(ratios.iter().cloned());
            line
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |line: &[String]| {
        line.iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", render(&header));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for line in &lines {
        println!("{}", render(line));
    }
    for note in notes {
        println!("  {note}");
    }
}

/// `1.05x`; more digits for very small ratios, fewer for very large ones.
pub(crate) fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

pub(crate) fn failure_note(label: &str, failures: &BTreeMap<String, usize>) -> Option<String> {
    if failures.is_empty() {
        return None;
    }
    let kinds: Vec<String> = failures.iter().map(|(k, n)| format!("{n}× {k}")).collect();
    Some(format!("{label} failures: {}", kinds.join(", ")))
}
