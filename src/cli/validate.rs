//! `stitch-bridge validate`: offline checking of warehouse files.
//!
//! Needs no config and no network, so a warehouse (or support) can check a file before dropping
//! it. Exit code: 0 all clean, 1 some rows rejected, 2 a file rejected or a usage problem.
//! Warnings (e.g. unknown columns) never change the exit code.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::formats::{self, Kind, ParseOptions};
use crate::report::ErrorWriter;

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// File kind (inventory, orders, shipments). Default: the parent folder's name, else guessed
    /// from the header.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Write the error report CSV here. With several files this is a directory that receives one
    /// `NAME.errors.csv` per file.
    #[arg(long)]
    pub errors_out: Option<PathBuf>,
    /// Print one JSON object per error (and warning) instead of text; the summary goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Inventory quantities are adjustments (automatic for names ending in `_delta.csv`).
    #[arg(long)]
    pub delta: bool,
    /// Field delimiter (one ASCII character; `\t` for tab).
    #[arg(long, default_value = ",", value_parser = parse_delimiter)]
    pub delimiter: u8,
    /// Extra chrono date format, e.g. `%d.%m.%Y`.
    #[arg(long)]
    pub date_format: Option<String>,
    /// Time zone for dates without an offset (IANA name).
    #[arg(long, default_value = "UTC", value_parser = parse_tz)]
    pub timezone: chrono_tz::Tz,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    formats::kind_for_folder(s)
        .ok_or_else(|| format!("unknown kind '{s}' (expected inventory, orders or shipments)"))
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("delimiter must be one ASCII character, got '{s}'")),
    }
}

fn parse_tz(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse().map_err(|_| format!("unknown time zone '{s}'"))
}

/// One reported problem, for text or JSON output.
struct Problem<'a> {
    file: &'a str,
    line: Option<u64>,
    column: &'a str,
    code: &'a str,
    message: &'a str,
    warning: bool,
}

fn emit(out: &mut impl Write, json: bool, p: &Problem) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "file": p.file, "line": p.line, "column": p.column, "code": p.code,
            "message": p.message, "severity": if p.warning { "warning" } else { "error" },
        });
        writeln!(out, "{v}")
    } else {
        let loc = p
            .line
            .map(|l| format!("{}:{l}", p.file))
            .unwrap_or_else(|| p.file.to_string());
        let column = if p.column.is_empty() { "-" } else { p.column };
        writeln!(out, "{loc}: {column}: {}: {}", p.code, p.message)
    }
}

/// Reads the first non-blank record as the header, for sniffing the kind.
fn read_header(path: &Path, delimiter: u8) -> Option<Vec<String>> {
    let file = File::open(path).ok()?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        // Sniffing needs the header only: a file that is one huge line is not read whole here.
        .from_reader(std::io::Read::take(file, 1 << 20));
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).ok()? {
        if rec.iter().any(|f| !f.iter().all(u8::is_ascii_whitespace)) {
            return Some(
                rec.iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let f = if i == 0 {
                            f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f)
                        } else {
                            f
                        };
                        String::from_utf8_lossy(f).into_owned()
                    })
                    .collect(),
            );
        }
    }
    None
}

fn detect_kind(args: &ValidateArgs, path: &Path) -> Option<Kind> {
    if let Some(k) = args.kind {
        return Some(k);
    }
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    if let Some(k) = folder.and_then(formats::kind_for_folder) {
        return Some(k);
    }
    read_header(path, args.delimiter).and_then(|h| formats::sniff(&h))
}

fn errors_path(args: &ValidateArgs, path: &Path) -> Option<PathBuf> {
    let out = args.errors_out.as_ref()?;
    if args.files.len() == 1 {
        return Some(out.clone());
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    Some(out.join(format!("{stem}.errors.csv")))
}

/// Checks one file; returns its exit status (0, 1 or 2).
fn check_file(args: &ValidateArgs, path: &Path, out: &mut impl Write) -> std::io::Result<i32> {
    let name = path.display().to_string();
    let json = args.json;
    let mut print = |p: &Problem| emit(out, json, p);
    let Some(kind) = detect_kind(args, path) else {
        print(&Problem {
            file: &name,
            line: None,
            column: "",
            code: "unknown_kind",
            message: "cannot tell the file kind from its folder or header; pass --kind",
            warning: false,
        })?;
        return Ok(2);
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("cannot open the file: {e}");
            print(&Problem {
                file: &name,
                line: None,
                column: "",
                code: "read_error",
                message: &msg,
                warning: false,
            })?;
            return Ok(2);
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = ParseOptions {
        delimiter: args.delimiter,
        date_format: args.date_format.clone(),
        timezone: args.timezone,
        inventory_delta: args.delta || formats::is_delta_name(&file_name),
        ..ParseOptions::default()
    };
    let mut report = match errors_path(args, path) {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Some(BufWriter::new(File::create(p)?))
        }
        None => None,
    };
    let (mut accepted, mut rejected, mut warnings) = (0u64, 0u64, 0usize);
    let mut status = 0;
    // The parser buffers its input itself, framing CSV on a second thread while this one checks
    // rows. Repeated SKUs are found after the last row, so memory stays flat whatever the file
    // size.
    let units = formats::parse_piped(kind, file, &opts)
        .map(|u| u.late_duplicates(formats::LATE_DUPLICATES_IN_MEMORY));
    let mut units = match units {
        Ok(u) => u,
        Err(rej) => {
            let column = rej.column.clone().unwrap_or_default();
            print(&Problem {
                file: &name,
                line: rej.line,
                column: &column,
                code: rej.code.as_str(),
                message: &rej.message,
                warning: false,
            })?;
            if let Some(w) = report.take() {
                let mut ew = ErrorWriter::new(w, &[])?;
                ew.write_file_error(rej.line, &column, rej.code.as_str(), &rej.message)?;
                ew.finish()?.flush()?;
            }
            eprintln!("{name}: {}: file rejected", kind.as_str());
            return Ok(2);
        }
    };
    for w in units.warnings() {
        warnings += 1;
        print(&Problem {
            file: &name,
            line: Some(w.line),
            column: &w.column,
            code: w.code.as_str(),
            message: &w.message,
            warning: true,
        })?;
    }
    let mut ew = match report.take() {
        Some(w) => Some(ErrorWriter::new(w, units.header())?),
        None => None,
    };
    while let Some(unit) = units.next_checked() {
        match unit {
            Ok(unit) if unit.is_accepted() => accepted += 1,
            Ok(unit) => {
                rejected += 1;
                status = 1;
                for e in unit.errors() {
                    print(&Problem {
                        file: &name,
                        line: Some(e.line),
                        column: &e.column,
                        code: e.code.as_str(),
                        message: &e.message,
                        warning: false,
                    })?;
                    if let Some(ew) = ew.as_mut() {
                        match unit.row_at(e.line) {
                            Some(row) => {
                                ew.write(row, e.line, &e.column, e.code.as_str(), &e.message)?
                            }
                            None => ew.write_file_error(
                                Some(e.line),
                                &e.column,
                                e.code.as_str(),
                                &e.message,
                            )?,
                        }
                    }
                }
            }
            Err(rej) => {
                status = 2;
                let column = rej.column.clone().unwrap_or_default();
                print(&Problem {
                    file: &name,
                    line: rej.line,
                    column: &column,
                    code: rej.code.as_str(),
                    message: &rej.message,
                    warning: false,
                })?;
                if let Some(ew) = ew.as_mut() {
                    ew.write_file_error(rej.line, &column, rej.code.as_str(), &rej.message)?;
                }
            }
        }
    }
    // Repeated SKUs come last, in line order: they are only known once every row was seen.
    if status != 2 {
        let late = units.finish().and_then(|late| {
            if late.is_empty() {
                return Ok(Vec::new());
            }
            let again = File::open(path)?;
            formats::resolve_duplicates(kind, again, &opts, &late)
                .map(|found| (late, found))
                .map_err(std::io::Error::other)
                .map(|(late, found)| {
                    found
                        .into_iter()
                        .map(|(row, e)| {
                            let valid = late
                                .binary_search_by_key(&e.line, |d| d.line)
                                .map(|i| late[i].otherwise_valid)
                                .unwrap_or(false);
                            (row, e, valid)
                        })
                        .collect()
                })
        });
        match late {
            Ok(found) => {
                for (row, e, otherwise_valid) in found {
                    if otherwise_valid {
                        accepted = accepted.saturating_sub(1);
                        rejected += 1;
                    }
                    status = 1;
                    print(&Problem {
                        file: &name,
                        line: Some(e.line),
                        column: &e.column,
                        code: e.code.as_str(),
                        message: &e.message,
                        warning: false,
                    })?;
                    if let Some(ew) = ew.as_mut() {
                        ew.write(&row, e.line, &e.column, e.code.as_str(), &e.message)?;
                    }
                }
            }
            Err(e) => {
                status = 2;
                let msg = format!("the check for repeated SKUs failed: {e}");
                print(&Problem {
                    file: &name,
                    line: None,
                    column: "",
                    code: "read_error",
                    message: &msg,
                    warning: false,
                })?;
            }
        }
    }
    if let Some(ew) = ew {
        ew.finish()?.flush()?;
    }
    let summary = format!(
        "{name}: {}: {accepted} accepted, {rejected} rejected{}{}",
        kind.as_str(),
        if warnings > 0 {
            format!(", {warnings} warning(s)")
        } else {
            String::new()
        },
        if status == 2 { "; file rejected" } else { "" },
    );
    if args.json {
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(status)
}

pub fn run(args: &ValidateArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut worst = 0;
    for path in &args.files {
        let status = match check_file(args, path, &mut out) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                2
            }
        };
        worst = worst.max(status);
    }
    let _ = out.flush();
    worst
}
