//! Validation throughput and memory (issue 2).
//!
//! Generates a deterministic inventory file (1,000,000 rows, and 4× that to show memory stays
//! flat) and an orders file (200,000 lines) in a temp folder, then runs, one after the other:
//! - `stitch-bridge validate` (the release binary users run), as a child process;
//! - the raw `csv` crate reading the same file into `ByteRecord`s (this program, `--raw-csv`);
//! - `frictionless validate --schema schemas/<kind>.json` (Python), when installed.
//!
//! The same inventory records also go into an 846 interchange (one LIN loop each, and 4× that),
//! validated by the same binary and compared with the CSV file by records/s (X12 spends more bytes
//! per record, so MB/s would flatter it), the two files' runs interleaved so both see the same
//! load.
//!
//! Throughput is file MB / wall time; peak RSS is each child's own `ru_maxrss` (`wait4`).
//! On the broken samples, lists which rows each of the two validators flags.
//!
//! `cargo bench --bench validate [-- --quick]`; sizes: `BENCH_INVENTORY_ROWS`, `BENCH_ORDER_LINES`.

mod common;

use common::{mb, measure, mib, row, Measured, Rng};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_stitch-bridge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

/// GTIN check digit over the leading digits.
fn check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits.iter().rev().enumerate().map(|(i, d)| (*d as u32) * if i % 2 == 0 { 3 } else { 1 }).sum();
    ((10 - sum % 10) % 10) as u8
}

fn barcode(n: u64) -> String {
    let body = format!("{:011}", n % 100_000_000_000);
    let digits: Vec<u8> = body.bytes().map(|b| b - b'0').collect();
    format!("{body}{}", check_digit(&digits))
}

/// The inventory records, in file order: (index, quantity, name as CSV writes it, barcode or "").
/// The CSV and the X12 files are generated from the same sequence.
fn inventory_records(
    rows: usize,
    mut f: impl FnMut(usize, u64, &str, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut rng = Rng(42);
    const WORDS: [&str; 8] = ["Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey", "Cable", "Bracket", "Valve"];
    for i in 0..rows {
        let q = rng.below(5000);
        let word = WORDS[rng.below(8) as usize];
        let name =
            if rng.below(4) == 0 { format!("\"{word}, size {}\"", rng.below(50)) } else { format!("{word} {i}") };
        let bc = if rng.below(3) == 0 { String::new() } else { barcode(10_000_000 + i as u64) };
        f(i, q, &name, &bc)?;
    }
    Ok(())
}

fn gen_inventory(path: &Path, rows: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    writeln!(w, "sku,quantity,name,barcode")?;
    inventory_records(rows, |i, q, name, bc| writeln!(w, "SKU-{i:08},{q},{name},{bc}"))?;
    w.flush()?;
    Ok(fs::metadata(path)?.len())
}

/// An 846 interchange with one LIN loop (`LIN**SK*<sku>~QTY*33*<qty>~`) per inventory record
/// (the SKUs and quantities of `gen_inventory`), in sets of at most `per_set` loops, one group.
fn gen_846(path: &Path, rows: usize, per_set: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    writeln!(
        w,
        "ISA*00*          *00*          *ZZ*WAREHOUSE      *ZZ*STITCHBRIDGE   *240315*1200*U*00401*000000001*0*P*>~"
    )?;
    writeln!(w, "GS*IB*WAREHOUSE*STITCHBRIDGE*20240315*1200*1*X*004010~")?;
    let (mut sets, mut in_set) = (0usize, 0usize);
    let close =
        |w: &mut BufWriter<fs::File>, sets: usize, loops: usize| writeln!(w, "SE*{}*{:04}~", 2 * loops + 3, sets);
    inventory_records(rows, |i, q, _, _| {
        if in_set == 0 {
            sets += 1;
            writeln!(w, "ST*846*{sets:04}~")?;
            writeln!(w, "BIA*00*SI*INV{sets}*20240315~")?;
        }
        writeln!(w, "LIN**SK*SKU-{i:08}~")?;
        writeln!(w, "QTY*33*{q}~")?;
        in_set += 1;
        if in_set == per_set {
            close(&mut w, sets, in_set)?;
            in_set = 0;
        }
        Ok(())
    })?;
    if in_set > 0 {
        close(&mut w, sets, in_set)?;
    }
    writeln!(w, "GE*{sets}*1~")?;
    writeln!(w, "IEA*1*000000001~")?;
    w.flush()?;
    Ok(fs::metadata(path)?.len())
}

fn gen_orders(path: &Path, lines: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut rng = Rng(7);
    writeln!(w, "order_ref,order_date,ship_name,ship_company,ship_address1,ship_address2,ship_city,ship_state,ship_zip,ship_country,ship_phone,ship_email,shipping_speed,sku,quantity,price,currency,action")?;
    const PLACES: [(&str, &str, &str, &str, &str); 4] = [
        ("Springfield", "IL", "62701", "US", "USD"),
        ("Toronto", "ON", "M5H 2N2", "CA", "CAD"),
        ("London", "", "SW1A 2AA", "GB", "GBP"),
        ("Berlin", "", "10115", "DE", "EUR"),
    ];
    const SPEEDS: [&str; 3] = ["Standard", "Expedited", "Priority"];
    let (mut written, mut order) = (0usize, 0u64);
    while written < lines {
        order += 1;
        let n = (1 + rng.below(3) as usize).min(lines - written);
        let (city, state, zip, country, cur) = PLACES[rng.below(4) as usize];
        let date = format!("2024-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28));
        let speed = SPEEDS[rng.below(3) as usize];
        let street = format!("{} Main St", 1 + rng.below(999));
        for _ in 0..n {
            let sku = rng.below(1_000_000);
            let q = 1 + rng.below(9);
            let price = rng.below(10_000);
            writeln!(
                w,
                "PO-{order:07},{date},Customer {order},,{street},,{city},{state},{zip},{country},555-0100,c{order}@example.com,{speed},SKU-{sku:08},{q},{}.{:02},{cur},create",
                price / 100,
                price % 100
            )?;
        }
        written += n;
    }
    w.flush()?;
    Ok(fs::metadata(path)?.len())
}

/// Raw csv crate: every record into one reused `ByteRecord`.
fn raw_csv(path: &str) -> ! {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_path(path).expect("open");
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec).expect("read") {
        n += 1;
    }
    println!("{n}");
    std::process::exit(0)
}

/// Fastest of several runs (`BENCH_RUNS`, default 5), with the highest peak RSS of them: this
/// machine is shared and a single run can be slowed by others, never sped up.
fn best_of(mut f: impl FnMut() -> Measured) -> Measured {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let mut best = f();
    for _ in 1..runs {
        let m = f();
        let max_rss = best.max_rss.max(m.max_rss);
        best = if m.wall < best.wall { Measured { max_rss, ..m } } else { Measured { max_rss, ..best } };
    }
    best
}

fn ours(kind: &str, file: &Path) -> Measured {
    best_of(|| ours_once(kind, file))
}

fn ours_once(kind: &str, file: &Path) -> Measured {
    let m = measure(Command::new(BIN).args(["validate", "--kind", kind]).arg(file), None).expect("run stitch-bridge");
    assert_eq!(m.status, 0, "stitch-bridge validate found problems in the generated {kind} file");
    m
}

/// `stitch-bridge validate FILE` on an X12 file (found by its ISA); with `config`, as account
/// `bench` of that configuration (`--config C validate --account bench FILE`).
fn ours_x12(file: &Path, config: Option<&Path>) -> Measured {
    best_of(|| ours_x12_once(file, config))
}

fn ours_x12_once(file: &Path, config: Option<&Path>) -> Measured {
    let mut cmd = Command::new(BIN);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("validate");
    if config.is_some() {
        cmd.args(["--account", "bench"]);
    }
    let m = measure(cmd.arg(file), None).expect("run stitch-bridge");
    assert_eq!(m.status, 0, "stitch-bridge validate found problems in the generated 846 file");
    m
}

/// A configuration whose only use is raising `max_rows` (the X12 reader counts segments against
/// it, two per LIN loop, so the 4x file has more than the default 5,000,000).
fn bench_config(dir: &Path, max_rows: usize) -> PathBuf {
    fs::write(dir.join("bench.token"), "t").unwrap();
    let p = dir.join("stitch-bridge.toml");
    fs::write(
        &p,
        format!(
            "[ledger]\npath = \"ledger.sqlite\"\n\n[[account]]\nname = \"bench\"\ndrop = \"drop\"\n\
             stitch_url = \"http://127.0.0.1:9\"\ntoken_file = \"bench.token\"\nmax_rows = {max_rows}\n"
        ),
    )
    .unwrap();
    // Private, as the binary asks of a config and a token file (it warns otherwise).
    use std::os::unix::fs::PermissionsExt;
    for f in [&p, &dir.join("bench.token")] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

fn raw(file: &Path) -> Measured {
    let me = std::env::current_exe().unwrap();
    best_of(|| measure(Command::new(&me).arg("--raw-csv").arg(file), None).expect("run raw csv"))
}

fn frictionless() -> Option<PathBuf> {
    common::find_program("frictionless", &[])
}

/// `frictionless validate --json --schema S FILE`, run in FILE's folder with relative paths
/// (frictionless refuses absolute paths and paths outside the working folder as "not safe").
fn run_frictionless(kind: &str, file: &Path, out: &Path) -> Option<Measured> {
    let exe = frictionless()?;
    let dir = file.parent()?;
    let schema = format!("{kind}.schema.json");
    fs::copy(Path::new(ROOT).join(format!("schemas/{kind}.json")), dir.join(&schema)).ok()?;
    let name = file.file_name()?;
    measure(Command::new(exe).current_dir(dir).args(["validate", "--json", "--schema", &schema]).arg(name), Some(out))
        .ok()
}

fn friction(kind: &str, file: &Path, out: &Path) -> Option<Measured> {
    let m = run_frictionless(kind, file, out)?;
    if m.status != 0 {
        common::note(&format!("frictionless reported problems in the generated {kind} file (exit {}); its figure still counts the full read", m.status));
    }
    Some(m)
}

fn rate(bytes: u64, m: &Measured) -> f64 {
    mb(bytes) / m.wall.as_secs_f64()
}

/// Start line of each record (1-based record number, header = 1) in a CSV file.
fn record_lines(path: &Path) -> Vec<u64> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_path(path).unwrap();
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    while rdr.read_byte_record(&mut rec).unwrap_or(false) {
        out.push(rec.position().map_or(0, |p| p.line()));
    }
    out
}

fn fmt_set(s: &BTreeSet<u64>) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    }
}

/// Lines flagged on the broken samples by us (own errors, not `group_rejected`) and by frictionless.
fn broken_samples(tmp: &Path) {
    for kind in ["inventory", "orders", "shipments"] {
        let sample = Path::new(ROOT).join(format!("samples/{kind}_broken.csv"));
        let file = tmp.join(format!("{kind}_broken.csv"));
        fs::copy(&sample, &file).unwrap();
        let out =
            Command::new(BIN).args(["validate", "--json", "--kind", kind]).arg(&file).output().expect("run validate");
        let mut mine = BTreeSet::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                if v["severity"] == "error" && v["code"] != "group_rejected" {
                    if let Some(n) = v["line"].as_u64() {
                        mine.insert(n);
                    }
                }
            }
        }
        let theirs = match frictionless() {
            None => None,
            Some(_) => {
                let json = tmp.join(format!("{kind}_broken.frictionless.json"));
                let _ = run_frictionless(kind, &file, &json);
                let lines = record_lines(&file);
                let v: serde_json::Value =
                    serde_json::from_str(&fs::read_to_string(&json).unwrap_or_default()).unwrap_or_default();
                let mut set = BTreeSet::new();
                for t in v["tasks"].as_array().into_iter().flatten() {
                    for e in t["errors"].as_array().into_iter().flatten() {
                        if let Some(r) = e["rowNumber"].as_u64() {
                            set.insert(lines.get(r as usize - 1).copied().unwrap_or(r));
                        }
                    }
                }
                Some(set)
            }
        };
        let (theirs_s, only_us, only_them) = match &theirs {
            None => ("n/a".to_string(), "n/a".to_string(), "n/a".to_string()),
            Some(t) => (
                fmt_set(t),
                fmt_set(&mine.difference(t).copied().collect()),
                fmt_set(&t.difference(&mine).copied().collect()),
            ),
        };
        println!("SIDE|{kind}_broken.csv|{}|{theirs_s}|{only_us}|{only_them}", fmt_set(&mine));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--raw-csv") {
        raw_csv(&args[i + 1]);
    }
    let inv_rows = common::size("BENCH_INVENTORY_ROWS", 1_000_000, 100_000);
    let order_lines = common::size("BENCH_ORDER_LINES", 200_000, 20_000);
    let tmp = tempfile::Builder::new().prefix("bench-validate-").tempdir().unwrap();
    let d = tmp.path();
    let inv = d.join("inventory.csv");
    let inv_big = d.join("inventory_x4.csv");
    let orders = d.join("orders.csv");
    let inv_bytes = gen_inventory(&inv, inv_rows).unwrap();
    let big_bytes = gen_inventory(&inv_big, inv_rows * 4).unwrap();
    let ord_bytes = gen_orders(&orders, order_lines).unwrap();
    println!(
        "validate: inventory {inv_rows} rows ({:.1} MB) and {} rows ({:.1} MB), orders {order_lines} lines ({:.1} MB)",
        mb(inv_bytes),
        inv_rows * 4,
        mb(big_bytes),
        mb(ord_bytes)
    );
    if frictionless().is_none() {
        common::note("frictionless not installed (pip install frictionless): its comparisons are n/a");
    }

    let k = |n: usize| {
        if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
            format!("{}M", n / 1_000_000)
        } else {
            format!("{}k", n / 1000)
        }
    };
    let mut rss_rows = Vec::new();
    let mut csv_inventory = false;
    for (kind, file, bytes, label) in [
        ("inventory", &inv, inv_bytes, format!("inventory {} rows", k(inv_rows))),
        ("orders", &orders, ord_bytes, format!("orders {} lines", k(order_lines))),
    ] {
        let o = ours(kind, file);
        let r = raw(file);
        let f = friction(kind, file, &d.join(format!("{kind}.frictionless.json")));
        let (ro, rr) = (rate(bytes, &o), rate(bytes, &r));
        println!(
            "  {label}: ours {ro:.1} MB/s ({:.2} s, {:.1} MiB), raw csv {rr:.1} MB/s ({:.2} s, {:.1} MiB){}",
            o.wall.as_secs_f64(),
            mib(o.max_rss),
            r.wall.as_secs_f64(),
            mib(r.max_rss),
            f.as_ref().map_or(String::new(), |f| format!(
                ", frictionless {:.2} MB/s ({:.1} s, {:.0} MiB)",
                rate(bytes, f),
                f.wall.as_secs_f64(),
                mib(f.max_rss)
            ))
        );
        row(
            &format!("validate {label}: vs raw csv"),
            &format!("{ro:.1} MB/s"),
            &format!("{rr:.1} MB/s"),
            &format!("{:.2}x", ro / rr),
            ">= 0.50x",
            Some(ro / rr >= 0.5),
        );
        match f {
            Some(f) => {
                let rf = rate(bytes, &f);
                row(
                    &format!("validate {label}: vs frictionless"),
                    &format!("{ro:.1} MB/s"),
                    &format!("{rf:.2} MB/s"),
                    &format!("{:.0}x", ro / rf),
                    ">= 20x",
                    Some(ro / rf >= 20.0),
                );
            }
            None => row(
                &format!("validate {label}: vs frictionless"),
                &format!("{ro:.1} MB/s"),
                "n/a",
                "n/a",
                ">= 20x",
                None,
            ),
        }
        if kind == "inventory" {
            csv_inventory = true;
        }
        rss_rows.push((kind, label, o, r));
    }
    // Memory: the same validator on a file 4x the size.
    let big = ours("inventory", &inv_big);
    let rb = raw(&inv_big);
    println!(
        "  inventory {} rows: ours {:.1} MB/s, {:.1} MiB; raw csv {:.1} MB/s, {:.1} MiB",
        k(inv_rows * 4),
        rate(big_bytes, &big),
        mib(big.max_rss),
        rate(big_bytes, &rb),
        mib(rb.max_rss)
    );
    for (kind, label, o, r) in &rss_rows {
        if *kind == "inventory" {
            let worst = o.max_rss.max(big.max_rss);
            let per_row = big.max_rss.saturating_sub(o.max_rss) as f64 / (3 * inv_rows) as f64;
            if per_row > 1.0 {
                common::note(&format!(
                    "validator peak RSS is not flat: +{:.1} MiB from {} to {} inventory rows, about {per_row:.0} bytes per extra row",
                    mib(big.max_rss.saturating_sub(o.max_rss)),
                    k(inv_rows),
                    k(inv_rows * 4)
                ));
            }
            row(
                &format!("validate peak RSS: inventory {} / {} rows", k(inv_rows), k(inv_rows * 4)),
                &format!("{:.1} / {:.1} MiB", mib(o.max_rss), mib(big.max_rss)),
                &format!("raw csv {:.1} / {:.1} MiB", mib(r.max_rss), mib(rb.max_rss)),
                "-",
                "< 64 MiB, flat (4x rows: <= +25%)",
                Some(worst < RSS_LIMIT && big.max_rss as f64 <= o.max_rss as f64 * 1.25),
            );
        } else {
            row(
                &format!("validate peak RSS: {label}"),
                &format!("{:.1} MiB", mib(o.max_rss)),
                &format!("raw csv {:.1} MiB", mib(r.max_rss)),
                "-",
                "< 64 MiB",
                Some(o.max_rss < RSS_LIMIT),
            );
        }
    }
    if csv_inventory {
        x12_rows(d, inv_rows, &inv);
    }
    broken_samples(d);
}

/// The 846 row: the same records as the CSV inventory file, as LIN loops. X12 spends more bytes
/// per record than CSV, so the fair ratio is records/s, not MB/s. The CSV file is validated
/// again here, each of its runs right before one of the X12 file's: the ratio then compares
/// the two under the same load (the CSV row's runs came minutes earlier, before frictionless).
fn x12_rows(d: &Path, rows: usize, csv_file: &Path) {
    const PER_SET: usize = 100_000;
    let x12 = d.join("inventory.x12");
    let x12_big = d.join("inventory_x4.x12");
    let bytes = gen_846(&x12, rows, PER_SET).unwrap();
    let big_bytes = gen_846(&x12_big, rows * 4, PER_SET).unwrap();
    let config = bench_config(d, rows * 4 * 2 + 1000);
    let mut csv: Option<Measured> = None;
    let o = best_of(|| {
        let c = ours_once("inventory", csv_file);
        csv = Some(match csv.take() {
            Some(b) if b.wall <= c.wall => b,
            _ => c,
        });
        ours_x12_once(&x12, None)
    });
    let csv = csv.expect("best_of runs at least once");
    let big = ours_x12(&x12_big, Some(&config));
    let (ro, rs) = (rate(bytes, &o), rows as f64 / o.wall.as_secs_f64());
    let csv_rs = rows as f64 / csv.wall.as_secs_f64();
    println!(
        "  846 {rows} LIN loops ({:.1} MB): {ro:.1} MB/s, {:.0} records/s ({:.2} s, {:.1} MiB); {} loops ({:.1} MB): {:.1} MB/s ({:.2} s, {:.1} MiB); csv inventory {csv_rs:.0} records/s",
        mb(bytes),
        rs,
        o.wall.as_secs_f64(),
        mib(o.max_rss),
        rows * 4,
        mb(big_bytes),
        rate(big_bytes, &big),
        big.wall.as_secs_f64(),
        mib(big.max_rss)
    );
    row(
        &format!("x12: 846 with {rows} LIN loops validated"),
        &format!("{ro:.1} MB/s, {:.2}M records/s", rs / 1e6),
        &format!("csv inventory same records {:.2}M records/s", csv_rs / 1e6),
        &format!("{:.2}x (records/s)", rs / csv_rs),
        ">= 0.50x",
        Some(rs / csv_rs >= 0.5),
    );
    let per_row = big.max_rss.saturating_sub(o.max_rss) as f64 / (3 * rows) as f64;
    if per_row > 1.0 {
        common::note(&format!(
            "X12 validator peak RSS is not flat: +{:.1} MiB from {rows} to {} LIN loops, about {per_row:.0} bytes per extra loop",
            mib(big.max_rss.saturating_sub(o.max_rss)),
            rows * 4
        ));
    }
    common::note(&format!(
        "x12 846 row: {PER_SET} LIN loops per set, a line break after each terminator; its csv figure is the best of the CSV inventory file's runs interleaved with the X12 runs (same load); the {}-loop file is validated with an account whose max_rows is raised (the reader counts segments, two per loop)",
        rows * 4
    ));
    row(
        &format!("x12 peak RSS: 846 with {rows} / {} LIN loops", rows * 4),
        &format!("{:.1} / {:.1} MiB", mib(o.max_rss), mib(big.max_rss)),
        "-",
        "-",
        "< 64 MiB, flat (4x loops: <= +25%)",
        Some(o.max_rss.max(big.max_rss) < RSS_LIMIT && big.max_rss as f64 <= o.max_rss as f64 * 1.25),
    );
}
