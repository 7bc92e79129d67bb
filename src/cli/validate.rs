//! `stitch-bridge validate`: offline checking of warehouse files.
//!
//! Needs no network, and no config unless `--account` asks for a partner's settings, so a
//! warehouse (or support) can check a file before dropping it. Exit code: 0 all clean, 1 some rows
//! rejected, 2 a file rejected or a usage problem. Warnings (e.g. unknown columns) never change
//! the exit code.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::formats::{self, FileRejection, Kind, ParseOptions, RawRow};
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
    /// Check with this configured account's column names, delimiter, date format, time zone and
    /// limits (read from `--config`); the options below override them.
    #[arg(long)]
    pub account: Option<String>,
    /// Write the error report CSV here. With several files this must be a folder (existing, or
    /// written with a trailing `/`) that receives one `NAME.errors.csv` per file.
    #[arg(long)]
    pub errors_out: Option<PathBuf>,
    /// Print one JSON object per error (and warning) instead of text; the summary goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Inventory quantities are adjustments (automatic for names ending in `_delta.csv`).
    #[arg(long)]
    pub delta: bool,
    /// Field delimiter (one ASCII character; `\t` for tab). Default: `,` or the account's.
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Extra chrono date format, e.g. `%d.%m.%Y`.
    #[arg(long)]
    pub date_format: Option<String>,
    /// Time zone for dates without an offset (IANA name). Default: UTC or the account's.
    #[arg(long, value_parser = parse_tz)]
    pub timezone: Option<chrono_tz::Tz>,
}

/// A `validate` option value clap could not take; the message is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum OptionValueError {
    #[error("unknown kind '{0}' (expected inventory, orders or shipments)")]
    Kind(String),
    #[error("delimiter must be one ASCII character, got '{0}'")]
    Delimiter(String),
    #[error("unknown time zone '{0}'")]
    TimeZone(String),
}

fn parse_kind(s: &str) -> Result<Kind, OptionValueError> {
    formats::kind_for_folder(s).ok_or_else(|| OptionValueError::Kind(s.to_string()))
}

fn parse_delimiter(s: &str) -> Result<u8, OptionValueError> {
    match s {
        "\\t" | "\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(OptionValueError::Delimiter(s.to_string())),
    }
}

fn parse_tz(s: &str) -> Result<chrono_tz::Tz, OptionValueError> {
    s.parse().map_err(|_| OptionValueError::TimeZone(s.to_string()))
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

fn emit<W: Write + ?Sized>(out: &mut W, json: bool, p: &Problem) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "file": p.file, "line": p.line, "column": p.column, "code": p.code,
            "message": p.message, "severity": if p.warning { "warning" } else { "error" },
        });
        writeln!(out, "{v}")
    } else {
        let loc = p.line.map(|l| format!("{}:{l}", p.file)).unwrap_or_else(|| p.file.to_string());
        let column = if p.column.is_empty() { "-" } else { p.column };
        writeln!(out, "{loc}: {column}: {}: {}", p.code, p.message)
    }
}

/// Opens `path` only if it is a regular file. `O_NONBLOCK` so that a FIFO is never waited on
/// (opening one for reading blocks until a writer comes); the type is checked on the handle.
fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, not_a_file_message(&ft)));
    }
    Ok(file)
}

fn not_a_file_message(ft: &std::fs::FileType) -> String {
    format!("this is {}, not a regular file; nothing was read", crate::drop::EntryKind::of(ft).describe())
}

/// Reads the first non-blank record as the header, for sniffing the kind.
fn read_header(path: &Path, delimiter: u8) -> Option<Vec<String>> {
    let file = open_regular(path).ok()?;
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
                        let f = if i == 0 { f.strip_prefix(b"\xef\xbb\xbf").unwrap_or(f) } else { f };
                        String::from_utf8_lossy(f).into_owned()
                    })
                    .collect(),
            );
        }
    }
    None
}

/// The kind: `--kind`, else the parent folder, else the header, read with the delimiter in use
/// or, failing that, with another common one (the parse then says `wrong_delimiter`).
fn detect_kind(args: &ValidateArgs, opts: &ParseOptions, path: &Path) -> Option<Kind> {
    if let Some(k) = args.kind {
        return Some(k);
    }
    let folder = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str());
    if let Some(k) = folder.and_then(formats::kind_for_folder) {
        return Some(k);
    }
    std::iter::once(opts.delimiter)
        .chain([b',', b';', b'\t', b'|'])
        .find_map(|d| read_header(path, d).and_then(|h| formats::sniff_with(&h, &opts.column_map)))
}

/// Where each file's error report goes: `--errors-out` itself for one file, else
/// `FOLDER/STEM.errors.csv`, with `~N` added when two inputs share a stem.
fn report_paths(args: &ValidateArgs) -> Vec<Option<PathBuf>> {
    let Some(out) = args.errors_out.as_ref() else {
        return vec![None; args.files.len()];
    };
    if args.files.len() == 1 {
        return vec![Some(out.clone())];
    }
    let mut used = HashSet::new();
    args.files
        .iter()
        .map(|path| {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
            let name = (1..)
                .map(|n| if n == 1 { format!("{stem}.errors.csv") } else { format!("{stem}~{n}.errors.csv") })
                .find(|n| !used.contains(n))
                .unwrap_or_default();
            used.insert(name.clone());
            Some(out.join(name))
        })
        .collect()
}

/// With several inputs `--errors-out` names a folder: an existing one, or one written with a
/// trailing `/`. Anything else is most likely meant as a file, and would silently become a
/// folder of that name.
fn errors_out_is_usable(args: &ValidateArgs) -> bool {
    match &args.errors_out {
        Some(out) if args.files.len() > 1 => out.is_dir() || out.as_os_str().as_encoded_bytes().ends_with(b"/"),
        _ => true,
    }
}

/// A problem found while reading, held in a spool (a temporary file) until the file's end: the
/// repeated SKUs found last are merged in by line, and the error file's header can name every
/// value of the widest ragged row.
struct Entry {
    line: Option<u64>,
    column: String,
    code: String,
    message: String,
    warning: bool,
    /// The row to echo in the error file; `None` for a problem with the file as a whole.
    row: Option<RawRow>,
}

/// Entries in a temporary file, one CSV record each: severity, line, column, code, message,
/// then the row's line and values if it has one. Memory stays flat however many problems.
struct Spool {
    csv: csv::Writer<BufWriter<File>>,
    /// Most values any spooled row has.
    widest: usize,
}

impl Spool {
    fn new() -> std::io::Result<Self> {
        let file = tempfile::tempfile()?;
        let csv = csv::WriterBuilder::new().flexible(true).from_writer(BufWriter::new(file));
        Ok(Spool { csv, widest: 0 })
    }

    fn push(&mut self, e: &Entry) -> std::io::Result<()> {
        let line = e.line.map(|l| l.to_string()).unwrap_or_default();
        let kind = match (&e.row, e.warning) {
            (_, true) => "w",
            (Some(_), false) => "r",
            (None, false) => "f",
        };
        let mut rec = csv::StringRecord::new();
        for v in [kind, &line, &e.column, &e.code, &e.message] {
            rec.push_field(v);
        }
        if let Some(row) = &e.row {
            self.widest = self.widest.max(row.fields.len());
            rec.push_field(&row.line.to_string());
            for v in row.fields.iter() {
                rec.push_field(v);
            }
        }
        self.csv.write_record(&rec).map_err(std::io::Error::other)
    }

    /// The entries back, in the order they were pushed.
    fn entries(self) -> std::io::Result<impl Iterator<Item = std::io::Result<Entry>>> {
        let mut file = self.csv.into_inner().map_err(|e| e.into_error())?.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        let rdr =
            csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(std::io::BufReader::new(file));
        Ok(rdr.into_records().map(|rec| {
            let rec = rec.map_err(std::io::Error::other)?;
            let get = |i: usize| rec.get(i).unwrap_or("").to_string();
            let row = (rec.get(0) == Some("r")).then(|| RawRow {
                line: rec.get(5).and_then(|l| l.parse().ok()).unwrap_or(0),
                fields: rec.iter().skip(6).collect(),
            });
            Ok(Entry {
                line: rec.get(1).and_then(|l| l.parse().ok()),
                column: get(2),
                code: get(3),
                message: get(4),
                warning: rec.get(0) == Some("w"),
                row,
            })
        }))
    }
}

impl Entry {
    fn of_rejection(rej: &FileRejection) -> Entry {
        Entry {
            line: rej.line,
            column: rej.column.clone().unwrap_or_default(),
            code: rej.code.as_str().to_string(),
            message: rej.message.clone(),
            warning: false,
            row: None,
        }
    }
}

/// How one file is checked.
struct Check<'a> {
    args: &'a ValidateArgs,
    /// The parse options of the account (or the defaults), with the command's overrides.
    base: &'a ParseOptions,
    /// With `--account`: its X12 partner, whose ids an interchange must carry.
    x12: Option<crate::config::X12Config>,
    /// With `--account`: its OpenPGP keys, for `.pgp` files.
    pgp: Option<crate::config::PgpSettings>,
}

/// A file refused before it could be parsed: the problem printed and, if asked, reported.
fn refuse(name: &str, json: bool, report: Option<&Path>, entry: &Entry, out: &mut impl Write) -> std::io::Result<i32> {
    emit(
        out,
        json,
        &Problem {
            file: name,
            line: entry.line,
            column: &entry.column,
            code: &entry.code,
            message: &entry.message,
            warning: false,
        },
    )?;
    if let Some(p) = report {
        let mut ew = ErrorWriter::new(create_report(p)?, &[])?;
        ew.write_file_error(entry.line, &entry.column, &entry.code, &entry.message)?;
        ew.finish()?.flush()?;
    }
    Ok(2)
}

fn create_report(p: &Path) -> std::io::Result<BufWriter<File>> {
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(BufWriter::new(File::create(p)?))
}

/// A problem that is not the file's content: it cannot be opened, or is a folder.
fn read_error(message: String) -> Entry {
    Entry {
        line: None,
        column: String::new(),
        code: formats::ErrorCode::ReadError.as_str().to_string(),
        message,
        warning: false,
        row: None,
    }
}

/// Checks one file; returns its exit status (0, 1 or 2). A wrapped file (`.pgp`, `.gz`,
/// `.zip`, combined) is checked as what it wraps.
fn check_file(check: &Check, path: &Path, report: Option<&Path>, out: &mut impl Write) -> std::io::Result<i32> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let peeled = crate::wrap::peel(&file_name);
    if peeled.layers.is_empty() && !peeled.zip || !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return check_plain(check, path, None, report, out);
    }
    check_wrapped(check, path, &peeled, report, out)
}

/// A wrapped file, unwrapped as the engine does (same limits, same keys with `--account`) into
/// a private temporary folder (0700, removed at the end) so memory stays flat, each checked
/// under its inner name in a folder of the same name as the original's (the kind still follows
/// the folder). A zip's members are checked one by one as `ARCHIVE.zip!MEMBER`, each with its
/// own error report.
fn check_wrapped(
    check: &Check,
    path: &Path,
    peeled: &crate::wrap::Peeled,
    report: Option<&Path>,
    out: &mut impl Write,
) -> std::io::Result<i32> {
    use crate::wrap::{self, WrapError};
    let name = path.display().to_string();
    let limit = check.base.max_file_bytes;
    let pgp = check.pgp.as_ref();
    let decrypt = |r| match pgp {
        Some(p) => p.decrypt(r),
        None => Err(crate::config::no_secret_key("no key was given: pass --account with a pgp_secret_key_file")),
    };
    let refused = |e: WrapError, out: &mut dyn Write| -> std::io::Result<i32> {
        let entry = match e.code() {
            Some(code) => Entry { code: code.as_str().to_string(), ..read_error(e.to_string()) },
            None => read_error(format!("cannot read {name}: {e}")),
        };
        let mut out = out;
        let code = refuse(&name, check.args.json, report, &entry, &mut out)?;
        eprintln!("{name}: file rejected");
        Ok(code)
    };
    let file = match open_regular(path) {
        Ok(f) => f,
        Err(e) => return refuse(&name, check.args.json, report, &read_error(format!("cannot open {name}: {e}")), out),
    };
    let stream = match wrap::unwrap_stream(Box::new(file), &peeled.layers, &decrypt, limit) {
        Ok(s) => s,
        Err(e) => return refused(e, out),
    };
    let folder = path.parent().and_then(|p| p.file_name()).map(|n| n.to_owned()).unwrap_or_else(|| "input".into());
    let dir = tempfile::tempdir()?;
    let inner_dir = dir.path().join(folder);
    std::fs::create_dir_all(&inner_dir)?;
    // Copies `r` into `target`; `Err(Ok(e))` is the wrapper's verdict on the file.
    let unwrap_into = |mut r: Box<dyn Read + Send + '_>, target: &Path| -> std::io::Result<Result<(), WrapError>> {
        let mut f = File::create(target)?;
        match std::io::copy(&mut r, &mut f) {
            Ok(_) => Ok(Ok(())),
            Err(e) => Ok(Err(WrapError::from_io(e))),
        }
    };
    if !peeled.zip {
        let target = inner_dir.join(&peeled.name);
        if let Err(e) = unwrap_into(stream, &target)? {
            return refused(e, out);
        }
        return check_plain(check, &target, Some(&format!("{name} ({})", peeled.name)), report, out);
    }
    let mut members = match wrap::archive::ZipMembers::spool(stream, limit) {
        Ok(z) => z,
        Err(e) => return refused(e, out),
    };
    let mut worst = 0;
    for m in members.members().to_vec() {
        let shown = format!("{name}{}{}", wrap::archive::SEPARATOR, m.name);
        if !m.wanted {
            let why = m.unreadable.clone().unwrap_or_else(|| "not a .csv, .edi or .x12 file".into());
            writeln!(out, "{shown}: skipped: {why}")?;
            continue;
        }
        let target = inner_dir.join(&m.display);
        let copied = match members.open(m.index) {
            Ok(r) => unwrap_into(r, &target)?,
            Err(e) => Err(e),
        };
        let member_report = report.map(|p| {
            let stem = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            p.with_file_name(format!("{}{}{stem}.errors.csv", file_stem(path), wrap::archive::SEPARATOR))
        });
        let status = match copied {
            Err(e) => refused(e, out)?,
            Ok(()) => check_plain(check, &target, Some(&shown), member_report.as_deref(), out)?,
        };
        worst = worst.max(status);
    }
    Ok(worst)
}

fn file_stem(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Checks one plain file, shown as `shown` (the original's name when `path` is what a wrapper
/// held); returns its exit status (0, 1 or 2).
fn check_plain(
    check: &Check,
    path: &Path,
    shown: Option<&str>,
    report: Option<&Path>,
    out: &mut impl Write,
) -> std::io::Result<i32> {
    let args = check.args;
    let name = shown.map(str::to_string).unwrap_or_else(|| path.display().to_string());
    let json = args.json;
    match std::fs::metadata(path) {
        Err(e) => return refuse(&name, json, report, &read_error(format!("cannot read {name}: {e}")), out),
        Ok(md) if md.is_dir() => {
            let msg = format!("{name} is a folder, not a file; name the files in it");
            return refuse(&name, json, report, &read_error(msg), out);
        }
        // Before anything opens it: a FIFO or socket is named, not waited on.
        Ok(md) if !md.is_file() => {
            let entry = Entry { code: "not_a_file".into(), ..read_error(not_a_file_message(&md.file_type())) };
            return refuse(&name, json, report, &entry, out);
        }
        Ok(_) => {}
    }
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(e) => return refuse(&name, json, report, &read_error(format!("cannot open {name}: {e}")), out),
    };
    // A spreadsheet saved by mistake is told apart before anything guesses its kind.
    let mut first = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut first)?;
    if let Some(rej) = formats::not_csv(&first) {
        return refuse(&name, json, report, &Entry::of_rejection(&rej), out);
    }
    file.rewind()?;
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head)?;
    file.rewind()?;
    if crate::x12::is_x12(&head) {
        return check_x12(check, &name, path, file, report, out);
    }
    let Some(kind) = detect_kind(args, check.base, path) else {
        let entry = Entry {
            code: "unknown_kind".into(),
            ..read_error("cannot tell the file kind from its folder or header; pass --kind".into())
        };
        return refuse(&name, json, report, &entry, out);
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut opts = check.base.clone();
    opts.inventory_delta |= args.delta || formats::is_delta_name(&file_name);
    drop(file);
    let (file, original) = open_checked(path, &opts)?;
    if let Some(original) = &original {
        // Read as the engine will: a corrected error file of ours is its original's rows again.
        eprintln!("{name}: one of our error files, read as its original {original} (fix-and-replay)");
        let base = original.rsplit('/').next().unwrap_or(original);
        opts.inventory_delta |= formats::is_delta_name(base);
    }
    let (mut accepted, mut rejected, mut warnings) = (0u64, 0u64, 0usize);
    let mut status = 0;
    // The parser buffers its input itself, framing CSV on a second thread while this one checks
    // rows. Repeated SKUs are found after the last row, so memory stays flat whatever the file
    // size.
    let units = formats::parse_piped(kind, file, &opts).map(|u| u.late_duplicates(formats::LATE_DUPLICATES_IN_MEMORY));
    let mut units = match units {
        Ok(u) => u,
        Err(rej) => {
            let code = refuse(&name, json, report, &Entry::of_rejection(&rej), out)?;
            eprintln!("{name}: {}: file rejected", kind.as_str());
            return Ok(code);
        }
    };
    let header = units.header().to_vec();
    let mut spool = Spool::new()?;
    for w in units.warnings() {
        warnings += 1;
        spool.push(&Entry {
            line: Some(w.line),
            column: w.column.clone(),
            code: w.code.as_str().to_string(),
            message: w.message.clone(),
            warning: true,
            row: None,
        })?;
    }
    while let Some(unit) = units.next_checked() {
        match unit {
            Ok(unit) if unit.is_accepted() => accepted += 1,
            Ok(unit) => {
                rejected += 1;
                status = 1;
                for e in unit.errors() {
                    spool.push(&Entry {
                        line: Some(e.line),
                        column: e.column.clone(),
                        code: e.code.as_str().to_string(),
                        message: e.message.clone(),
                        warning: false,
                        row: unit.row_at(e.line).cloned(),
                    })?;
                }
            }
            Err(rej) => {
                status = 2;
                spool.push(&Entry::of_rejection(&rej))?;
            }
        }
    }
    // Repeated SKUs are only known once every row was seen; they are merged in by line below.
    // A file refused part-way still has them among the rows read before, as the engine (which
    // finds them as it goes) reports them: every wanted row precedes the refusal, so the second
    // read stops before meeting it again.
    let mut late: Vec<Entry> = Vec::new();
    match late_duplicates(&mut units, kind, path, &opts) {
        Ok(found) => {
            for (row, e, otherwise_valid) in found {
                if otherwise_valid {
                    accepted = accepted.saturating_sub(1);
                    rejected += 1;
                }
                status = status.max(1);
                late.push(Entry {
                    line: Some(e.line),
                    column: e.column,
                    code: e.code.as_str().to_string(),
                    message: e.message,
                    warning: false,
                    row: Some(row),
                });
            }
        }
        Err(e) => {
            status = 2;
            late.push(read_error(format!("the check for repeated SKUs failed: {e}")));
        }
    }
    drop(units);
    let widest =
        late.iter().filter_map(|e| e.row.as_ref()).map(|r| r.fields.len()).chain([spool.widest]).max().unwrap_or(0);
    let ew = match report {
        Some(p) => {
            // A ragged row keeps every value: those beyond the header go under extra_1, ….
            let columns = formats::error_file_header(&header, widest);
            Some(ErrorWriter::new(create_report(p)?, &columns)?)
        }
        None => None,
    };
    write_problems(&name, json, spool, late, ew, out)?;
    let summary = format!(
        "{name}: {}: {accepted} accepted, {rejected} rejected{}{}",
        kind.as_str(),
        if warnings > 0 { format!(", {warnings} warning(s)") } else { String::new() },
        if status == 2 { "; file rejected" } else { "" },
    );
    if args.json {
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(status)
}

/// An X12 interchange, checked as the engine reads it: the envelope, each set's syntax (a set at
/// fault is rejected whole), each unit's values, and with `--account` the partner ids. Streams:
/// problems are spooled, memory stays flat.
fn check_x12(
    check: &Check,
    name: &str,
    path: &Path,
    file: File,
    report: Option<&Path>,
    out: &mut impl Write,
) -> std::io::Result<i32> {
    use crate::x12::inbound::{read_piped, Event, X12Options};
    let json = check.args.json;
    let x12_opts = X12Options::from_parse(check.base);
    // The reader buffers its input itself and frames segments on a second thread while this
    // one checks them; repeated SKUs are found after the last unit, so memory stays flat.
    let mut units = match read_piped(file, &x12_opts) {
        Ok(u) => u.check_only(formats::LATE_DUPLICATES_IN_MEMORY),
        Err(rej) => {
            let code = refuse(name, json, report, &Entry::of_rejection(&rej), out)?;
            eprintln!("{name}: x12: file rejected");
            return Ok(code);
        }
    };
    if let Some(cfg) = &check.x12 {
        if let Err(rej) = crate::x12::envelope::check_parties(units.interchange(), &cfg.partner(), &cfg.us()) {
            let code = refuse(name, json, report, &Entry::of_rejection(&rej), out)?;
            eprintln!("{name}: x12: file rejected");
            return Ok(code);
        }
    }
    let (mut accepted, mut rejected, mut status) = (0u64, 0u64, 0);
    let mut in_set = (0u64, 0u64);
    let mut set_syntax = false;
    let mut spool = Spool::new()?;
    // The error report shows each segment as the partner wrote it, with the file's separator.
    let sep = (units.interchange().separators.element as char).to_string();
    let segment = |row: &RawRow| RawRow {
        line: row.line,
        fields: [row.fields.iter().collect::<Vec<_>>().join(&sep)].into_iter().collect(),
    };
    let mut sets: Vec<&'static str> = Vec::new();
    // Sets refused whole, (first line, last line): a late repeat in one of them was counted
    // rejected already.
    let mut refused_sets: Vec<(u64, u64)> = Vec::new();
    loop {
        let ev = match units.next() {
            None => break,
            Some(Err(rej)) => {
                status = 2;
                spool.push(&Entry::of_rejection(&rej))?;
                break;
            }
            Some(Ok(ev)) => ev,
        };
        match ev {
            Event::Unit { set, unit } => {
                if !sets.contains(&set.st01()) {
                    sets.push(set.st01());
                }
                match &unit.result {
                    Ok(_) => in_set.0 += 1,
                    Err(errs) => {
                        in_set.1 += 1;
                        status = status.max(1);
                        set_syntax |= errs.iter().any(|e| crate::x12::element_syntax_code(e.code).is_some());
                        for e in errs {
                            let row = unit.rows.iter().find(|r| r.line == e.line).map(segment);
                            spool.push(&Entry {
                                line: Some(e.line),
                                column: e.column.clone(),
                                code: e.code.as_str().to_string(),
                                message: e.message.clone(),
                                warning: false,
                                row,
                            })?;
                        }
                    }
                }
            }
            Event::SetEnd { kind, result, errors, first_line, last_line } => {
                let counted = units.take_accepted();
                if let Some(k) = kind.filter(|_| counted > 0) {
                    if !sets.contains(&k.st01()) {
                        sets.push(k.st01());
                    }
                }
                in_set.0 += counted;
                // As the engine judges it: a syntax error in a value rejects the whole set.
                if result.set_code.is_none() && result.errors.is_empty() && !set_syntax {
                    accepted += in_set.0;
                    rejected += in_set.1;
                } else {
                    refused_sets.push((first_line, last_line));
                    rejected += in_set.0 + in_set.1;
                    status = status.max(1);
                    for e in &errors {
                        spool.push(&Entry {
                            line: Some(e.line),
                            column: e.column.clone(),
                            code: e.code.as_str().to_string(),
                            message: e.message.clone(),
                            warning: false,
                            row: None,
                        })?;
                    }
                }
                in_set = (0, 0);
                set_syntax = false;
            }
            Event::GroupEnd(g) => {
                if g.group_code.is_some() {
                    status = status.max(1);
                    for e in units.group_errors() {
                        spool.push(&Entry {
                            line: Some(e.line),
                            column: e.column.clone(),
                            code: e.code.as_str().to_string(),
                            message: e.message.clone(),
                            warning: false,
                            row: None,
                        })?;
                    }
                }
            }
            Event::Ack(_) => {
                in_set.0 += 1;
                if !sets.contains(&"997") {
                    sets.push("997");
                }
            }
        }
    }
    // Repeated SKUs are only known once every unit was seen; merged in by line below.
    let mut late: Vec<Entry> = Vec::new();
    match units.finish().and_then(|cands| late_x12_duplicates(path, &x12_opts, &cands)) {
        Ok(found) => {
            for crate::x12::inbound::LateRepeat { error: e, row, otherwise_valid } in found {
                let line = e.line;
                if otherwise_valid && !refused_sets.iter().any(|(a, b)| (*a..=*b).contains(&line)) {
                    accepted = accepted.saturating_sub(1);
                    rejected += 1;
                }
                status = status.max(1);
                late.push(Entry {
                    line: Some(e.line),
                    column: e.column,
                    code: e.code.as_str().to_string(),
                    message: e.message,
                    warning: false,
                    row: row.as_ref().map(segment),
                });
            }
        }
        Err(e) => {
            status = 2;
            late.push(read_error(format!("the check for repeated SKUs failed: {e}")));
        }
    }
    drop(units);
    let ew = match report {
        Some(p) => Some(ErrorWriter::new(create_report(p)?, &["segment".to_string()])?),
        None => None,
    };
    write_problems(name, json, spool, late, ew, out)?;
    let summary = format!(
        "{name}: x12 {}: {accepted} accepted, {rejected} rejected{}",
        if sets.is_empty() { "-".to_string() } else { sets.join("/") },
        if status == 2 { "; file rejected" } else { "" },
    );
    if json {
        eprintln!("{summary}");
    } else {
        writeln!(out, "{summary}")?;
    }
    Ok(status)
}

/// The repeats among the candidates of `X12Units::finish`, confirmed on a second read.
fn late_x12_duplicates(
    path: &Path,
    opts: &crate::x12::inbound::X12Options,
    cands: &[formats::LateDuplicate],
) -> std::io::Result<Vec<crate::x12::inbound::LateRepeat>> {
    if cands.is_empty() {
        return Ok(Vec::new());
    }
    let again = std::io::BufReader::new(open_regular(path)?);
    crate::x12::inbound::resolve_duplicates(again, opts, cands).map_err(std::io::Error::other)
}

/// Prints the spooled problems and the late repeated SKUs merged in line order, writing each
/// (but warnings) to the error report when there is one. Shared by the CSV and X12 checks.
fn write_problems<W: Write>(
    name: &str,
    json: bool,
    spool: Spool,
    late: Vec<Entry>,
    mut ew: Option<ErrorWriter<W>>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut write = |e: &Entry, out: &mut dyn Write| -> std::io::Result<()> {
        emit(
            out,
            json,
            &Problem {
                file: name,
                line: e.line,
                column: &e.column,
                code: &e.code,
                message: &e.message,
                warning: e.warning,
            },
        )?;
        match (ew.as_mut(), &e.row) {
            (None, _) => Ok(()),
            (Some(_), _) if e.warning => Ok(()),
            (Some(ew), Some(row)) => ew.write(row, row.line, &e.column, &e.code, &e.message),
            (Some(ew), None) => ew.write_file_error(e.line, &e.column, &e.code, &e.message),
        }
    };
    let mut late = late.into_iter().peekable();
    for entry in spool.entries()? {
        let entry = entry?;
        if let Some(line) = entry.line {
            while let Some(d) = late.next_if(|d| d.line.is_some_and(|l| l < line)) {
                write(&d, out)?;
            }
        }
        write(&entry, out)?;
    }
    for d in late {
        write(&d, out)?;
    }
    if let Some(ew) = ew {
        ew.finish()?.flush()?;
    }
    Ok(())
}

/// Repeated SKUs found after the last row (see `Units::late_duplicates`): each with its row, its
/// error, and whether the row was otherwise valid (so counted as accepted so far).
/// `path` as the checks read it: one of our error files dropped back (`formats::replay`) is read
/// as the plain file of its original's rows, as the engine reads it; with the original it names.
fn open_checked(path: &Path, opts: &ParseOptions) -> std::io::Result<(Box<dyn Read + Send>, Option<String>)> {
    use formats::replay;
    let mut file = open_regular(path)?;
    let mut head = Vec::new();
    (&mut file).take(replay::SNIFF_BYTES as u64).read_to_end(&mut head)?;
    let whole = head.len() < replay::SNIFF_BYTES;
    file.rewind()?;
    let Some(shape) = replay::sniff(&head) else { return Ok((Box::new(file), None)) };
    let fallback = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let original = replay::first_origin(&head, whole, &shape)
        .unwrap_or_else(|| replay::original_name_of(&fallback).unwrap_or(&fallback).to_string());
    let origins = std::sync::Arc::default();
    Ok((Box::new(replay::Replay::new(file, shape, opts.delimiter, &original, origins)), Some(original)))
}

fn late_duplicates<R: Read>(
    units: &mut formats::Units<R>,
    kind: Kind,
    path: &Path,
    opts: &ParseOptions,
) -> std::io::Result<Vec<(RawRow, formats::RecordError, bool)>> {
    let late = units.finish()?;
    if late.is_empty() {
        return Ok(Vec::new());
    }
    let (again, _) = open_checked(path, opts)?;
    let found = formats::resolve_duplicates(kind, again, opts, &late).map_err(std::io::Error::other)?;
    Ok(found
        .into_iter()
        .map(|(row, e)| {
            let valid =
                late.binary_search_by_key(&e.line, |d| d.line).map(|i| late[i].otherwise_valid).unwrap_or(false);
            (row, e, valid)
        })
        .collect())
}

/// The parse options: the account's (`--account`, from the config) or the defaults, then the
/// command's own options.
type AccountParts = (ParseOptions, Option<crate::config::X12Config>, Option<crate::config::PgpSettings>);

fn options(args: &ValidateArgs, config: &Path) -> Result<AccountParts, i32> {
    let (mut opts, x12, pgp) = match &args.account {
        Some(name) => {
            let config = super::load_config(config)?;
            let acct = super::find_account(&config, name)?;
            (acct.parse.clone(), acct.x12.clone(), acct.pgp.clone())
        }
        None => (ParseOptions::default(), None, None),
    };
    if let Some(d) = args.delimiter {
        opts.delimiter = d;
    }
    if let Some(f) = &args.date_format {
        opts.date_format = Some(f.clone());
    }
    if let Some(tz) = args.timezone {
        opts.timezone = tz;
    }
    Ok((opts, x12, pgp))
}

/// `config` is read only with `--account`.
pub fn run(args: &ValidateArgs, config: &Path) -> i32 {
    if !errors_out_is_usable(args) {
        let out = args.errors_out.as_deref().unwrap_or(Path::new("")).display().to_string();
        eprintln!(
            "error: --errors-out {out} is not a folder, but {} files are checked: name an existing \
             folder (or end the path with '/') to get one NAME.errors.csv per file",
            args.files.len()
        );
        return crate::engine::exit::USAGE;
    }
    let (base, x12, pgp) = match options(args, config) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let check = Check { args, base: &base, x12, pgp };
    let mut out = super::out::Stdout::lock();
    let mut worst = 0;
    for (path, report) in args.files.iter().zip(report_paths(args)) {
        let report = report.as_deref();
        let mut checked = if super::out::failed() {
            check_file(&check, path, report, &mut std::io::sink())
        } else {
            check_file(&check, path, report, &mut out)
        };
        if checked.is_err() && super::out::failed() {
            // Our own output failed, not the file (`main` reports that once): check it again
            // unprinted, so the exit code is still the file's.
            checked = check_file(&check, path, report, &mut std::io::sink());
        }
        let status = match checked {
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
