//! `verdicts subscribers add|import|export|list|remove|repermission`.

use std::path::Path;

use super::{Failure, SubscribersCommand, open_app};
use crate::app::subscribers::{ImportCounts, ImportRow};
use crate::app::{Actor, App};
use crate::config::Settings;
use crate::store::subscribers::AddOutcome;
use crate::subscribers::{SubscriberEmail, SubscriberName};

pub(super) async fn run(
    settings: &Settings,
    command: SubscribersCommand,
    json: bool,
) -> Result<(), Failure> {
    let app = open_app(settings).await?;
    let result = match command {
        SubscribersCommand::Add {
            email,
            name,
            confirmed,
        } => add(&app, &email, name.as_deref(), confirmed, json).await,
        SubscribersCommand::Import { file, strict } => import(&app, &file, strict, json).await,
        SubscribersCommand::Export => export(&app).await,
        SubscribersCommand::List { status } => list(&app, status, json).await,
        SubscribersCommand::Remove { email } => remove(&app, &email, json).await,
        SubscribersCommand::Repermission {
            confirmed_before,
            deadline,
            dry_run,
        } => repermission(&app, confirmed_before, deadline, dry_run, json).await,
    };
    app.close().await;
    result
}

async fn repermission(
    app: &App,
    before: chrono::DateTime<chrono::Utc>,
    deadline: std::time::Duration,
    dry_run: bool,
    json: bool,
) -> Result<(), Failure> {
    let r = app
        .repermission(&Actor::Cli, before, deadline, dry_run)
        .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&r).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    let who = format!(
        "{} reader{} confirmed before {}",
        r.readers,
        if r.readers == 1 { "" } else { "s" },
        r.confirmed_before.format("%Y-%m-%d")
    );
    if r.dry_run {
        println!("would ask {who}; nothing sent (--dry-run)");
    } else {
        println!(
            "asked {who}: each gets a \"still want this?\" mail with a one-click keep; those who do not keep by {} are unsubscribed",
            r.deadline.format("%Y-%m-%d %H:%M UTC")
        );
    }
    Ok(())
}

async fn add(
    app: &App,
    email: &str,
    name: Option<&str>,
    confirmed: bool,
    json: bool,
) -> Result<(), Failure> {
    let email = SubscriberEmail::parse(email).map_err(|e| Failure::Input(format!("EMAIL: {e}")))?;
    let name = SubscriberName::parse(name).map_err(|e| Failure::Input(format!("--name: {e}")))?;
    let outcome = app
        .add_subscriber(&Actor::Cli, &email, name.as_ref(), confirmed)
        .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "email": email, "outcome": outcome })
        );
    } else if outcome == AddOutcome::Added {
        println!(
            "added {email} ({})",
            if confirmed { "confirmed" } else { "pending" }
        );
    } else {
        println!("{email} is already a subscriber; nothing changed");
    }
    Ok(())
}

/// Bad rows named one by one in the report; past this many, only counted (a malformed
/// million-row file is reported, not echoed).
const MAX_BAD_ROWS_SHOWN: usize = 100;

/// What a pass over the file found wrong, by line number.
#[derive(Default)]
struct BadRows {
    count: u64,
    shown: Vec<(u64, String)>,
}

impl BadRows {
    fn push(&mut self, line: u64, message: String) {
        self.count += 1;
        if self.shown.len() < MAX_BAD_ROWS_SHOWN {
            self.shown.push((line, message));
        }
    }

    fn report(&self, file: &Path) -> String {
        let mut lines: Vec<String> = self
            .shown
            .iter()
            .map(|(line, message)| format!("{}: line {line}: {}", file.display(), excerpt(message)))
            .collect();
        if self.count > self.shown.len() as u64 {
            lines.push(format!(
                "{}: … and {} more bad rows",
                file.display(),
                self.count - self.shown.len() as u64
            ));
        }
        lines.join("\n")
    }
}

/// Rows handed to the database at a time: one store batch.
const IMPORT_CHUNK: usize = crate::store::subscribers::IMPORT_BATCH;

/// The CSV read a row at a time and handed out in batches of good rows; bad rows are recorded
/// by line. Memory stays flat in the file's size but for 8 bytes per address seen (to refuse
/// duplicates within the file, [`SeenHashes`]): a batch.
struct CsvBatches {
    reader: csv::Reader<std::fs::File>,
    email_col: usize,
    name_col: Option<usize>,
    hasher: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
    seen: SeenHashes,
    record: csv::StringRecord,
    bad: BadRows,
    done: bool,
}

impl CsvBatches {
    fn open(file: &Path) -> Result<CsvBatches, Failure> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_path(file)
            .map_err(|e| Failure::Input(format!("{}: {e}", file.display())))?;
        let headers = reader
            .headers()
            .map_err(|e| {
                Failure::Input(format!(
                    "{}: reading the header row: {}",
                    file.display(),
                    excerpt(&e.to_string())
                ))
            })?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let Some(email_col) = column("email") else {
            return Err(Failure::Input(format!(
                "{}: line 1: the header row needs an `email` column (found: {})",
                file.display(),
                excerpt(&headers.iter().collect::<Vec<_>>().join(", "))
            )));
        };
        Ok(CsvBatches {
            name_col: column("name"),
            email_col,
            reader,
            hasher: Default::default(),
            seen: Default::default(),
            record: csv::StringRecord::new(),
            bad: BadRows::default(),
            done: false,
        })
    }

    /// The next batch of good rows; `None` at the end of the file.
    fn next_batch(&mut self) -> Option<Vec<ImportRow>> {
        use std::hash::BuildHasher;
        let mut batch = Vec::with_capacity(IMPORT_CHUNK);
        while !self.done && batch.len() < IMPORT_CHUNK {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => self.done = true,
                Ok(true) => {
                    let r = &self.record;
                    let line = r.position().map_or(0, |p| p.line());
                    let parsed = SubscriberEmail::parse(r.get(self.email_col).unwrap_or(""))
                        .and_then(|e| {
                            Ok((
                                e,
                                SubscriberName::parse(self.name_col.and_then(|c| r.get(c)))?,
                            ))
                        });
                    match parsed {
                        Ok((email, name)) => {
                            if self.seen.insert(self.hasher.hash_one(email.as_str())) {
                                batch.push((email, name));
                            } else {
                                self.bad
                                    .push(line, format!("{email} appears earlier in the file"));
                            }
                        }
                        Err(e) => self.bad.push(line, e.0),
                    }
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        self.done = true;
                    }
                    self.bad.push(line, e.to_string());
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    }

    /// Bytes read so far.
    fn position(&self) -> u64 {
        self.reader.position().byte()
    }
}

async fn import(app: &App, file: &Path, strict: bool, json: bool) -> Result<(), Failure> {
    let size = std::fs::metadata(file)
        .map_err(|e| Failure::Input(format!("{}: {e}", file.display())))?
        .len();
    if strict {
        // A first pass that writes nothing: with --strict one bad row imports nothing.
        let mut rows = CsvBatches::open(file)?;
        while rows.next_batch().is_some() {}
        if rows.bad.count > 0 {
            return Err(Failure::Input(format!(
                "{}\nnothing imported (--strict)",
                rows.bad.report(file)
            )));
        }
    }
    let mut rows = CsvBatches::open(file)?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(size)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} · {bytes_per_sec} · ETA {eta}",
        )
        .expect("a valid template"),
    );
    let source = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut run = app.begin_subscriber_import(&Actor::Cli, &source).await?;
    while let Some(batch) = rows.next_batch() {
        run.add(&batch).await?;
        bar.set_position(rows.position());
    }
    bar.finish_and_clear();
    let bad = rows.bad;
    let ImportCounts {
        added,
        already_present: present,
        suppressed,
    } = run.finish(bad.count).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "added": added, "already_present": present, "suppressed": suppressed,
                "bad_row_count": bad.count,
                "bad_rows": bad.shown.iter().map(|(line, message)| serde_json::json!({"line": line, "error": message})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{added} added, {present} already present, {suppressed} skipped (unsubscribed or erased), {} bad row(s)",
            bad.count
        );
    }
    if bad.count == 0 {
        Ok(())
    } else {
        Err(Failure::Input(bad.report(file)))
    }
}

/// The addresses seen so far in a file, as 64-bit hashes (a false "appears earlier" takes two
/// addresses of one file with the same hash: odds about n²/2⁶⁵, 3·10⁻⁸ for a million), in
/// 8 bytes an address: a million-row file costs 8 MB, where a `HashSet<u64>` costs 19 MB and
/// 28 MB while it grows (the import's peak RSS was over 50 MB for that alone).
///
/// New hashes collect in a small set that is merged into one sorted vector when full. A
/// lookup in the vector starts where the value says (hashes are uniform, so a hash's rank is
/// about `hash / 2⁶⁴ · len`, off by a few hundred at a million) and gallops from there.
#[derive(Default)]
struct SeenHashes {
    sorted: Vec<u64>,
    recent: std::collections::HashSet<u64>,
}

/// Hashes held in [`SeenHashes::recent`] before a merge (1.2 MB).
const RECENT_HASHES: usize = 1 << 16;

impl SeenHashes {
    /// `false` when `hash` was seen before.
    fn insert(&mut self, hash: u64) -> bool {
        if self.in_sorted(hash) || !self.recent.insert(hash) {
            return false;
        }
        if self.recent.len() >= RECENT_HASHES {
            self.merge();
        }
        true
    }

    fn in_sorted(&self, hash: u64) -> bool {
        let s = &self.sorted;
        if s.is_empty() {
            return false;
        }
        let guess = ((u128::from(hash) * s.len() as u128) >> 64) as usize;
        // Widen [lo, hi) around the guess until it must hold `hash` if anything does.
        let (mut lo, mut hi) = (guess, guess + 1);
        let mut step = 1;
        while lo > 0 && s[lo] > hash {
            lo = lo.saturating_sub(step);
            step *= 2;
        }
        step = 1;
        while hi < s.len() && s[hi - 1] < hash {
            hi = (hi + step).min(s.len());
            step *= 2;
        }
        s[lo..hi].binary_search(&hash).is_ok()
    }

    /// Moves the recent hashes into the sorted vector: sorted, then merged from the back in
    /// place (the vector grows by their number; nothing else is copied).
    fn merge(&mut self) {
        let mut new: Vec<u64> = self.recent.drain().collect();
        new.sort_unstable();
        let old = self.sorted.len();
        self.sorted.resize(old + new.len(), 0);
        let (mut i, mut j) = (old, new.len());
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.sorted[i - 1] > new[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
    }
}

/// Longest piece of a file's own text quoted back in an error message.
const MAX_EXCERPT: usize = 80;

/// At most [`MAX_EXCERPT`] characters of `text`, marked when cut: a junk header line of 50 MB
/// is named, not echoed.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_EXCERPT).collect();
    if chars.next().is_some() {
        format!("{head}… ({} bytes in all)", text.len())
    } else {
        head
    }
}

/// Writes every subscriber as CSV to standard output as the rows arrive (constant memory);
/// the console's export link uses the same writer.
async fn export(app: &App) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    app.export_subscribers(&Actor::Cli, out).await?;
    Ok(())
}

async fn list(
    app: &App,
    status: Option<crate::subscribers::SubscriberStatus>,
    json: bool,
) -> Result<(), Failure> {
    let rows = app.list_subscribers(status).await?;
    if json {
        println!("{}", serde_json::json!(rows));
        return Ok(());
    }
    println!(
        "{:<40} {:<13} {:<20} NAME",
        "EMAIL", "STATUS", "SINCE (UTC)"
    );
    for r in &rows {
        println!(
            "{:<40} {:<13} {:<20} {}",
            super::truncate(&r.email, 40),
            r.status.as_str(),
            r.created_at.format("%Y-%m-%d %H:%M"),
            r.name.as_deref().unwrap_or("")
        );
    }
    println!("{} subscriber(s)", rows.len());
    Ok(())
}

async fn remove(app: &App, email: &str, json: bool) -> Result<(), Failure> {
    let email = SubscriberEmail::parse(email).map_err(|e| Failure::Input(format!("EMAIL: {e}")))?;
    let known = app.remove_subscriber(&Actor::Cli, &email).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "erased": known, "suppressed": true })
        );
    } else if known {
        println!("erased {email}; a suppression hash keeps it from being mailed again");
    } else {
        println!("{email} was not a subscriber; it is suppressed from now on");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a `HashSet`, across several merges, with repeats old and new and hashes at
    /// both ends of the range.
    #[test]
    fn seen_hashes_match_a_hash_set() {
        let mut seen = SeenHashes::default();
        let mut reference = std::collections::HashSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..(5 * RECENT_HASHES as u64) {
            // xorshift; every seventh value repeats an earlier one.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hash = match i % 7 {
                0 => i / 2,
                3 => u64::MAX - i / 3,
                _ => x % (1 << 40) * (1 << 20),
            };
            assert_eq!(
                seen.insert(hash),
                reference.insert(hash),
                "hash {hash} at {i}"
            );
        }
        assert!(seen.sorted.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen.sorted.len() + seen.recent.len(), reference.len());
        for &hash in &reference {
            assert!(!seen.insert(hash));
        }
    }
}
