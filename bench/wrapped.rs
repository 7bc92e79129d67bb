//! Wrapped files: an inventory file gzipped and then encrypted with OpenPGP, validated end to
//! end (issue 14).
//!
//! Generates the inventory records of `bench/validate.rs` (same recipe, same seed) until the
//! file is about 200 MB (`BENCH_WRAPPED_MB`; quick: 20), gzips it with `gzip -6` and encrypts
//! it with a real `gpg` to a Curve25519 key made in a throwaway GnuPG home (passphrase
//! protected, as a deployed key is). The secret key is exported for a throwaway configuration
//! with one account. Then, in rounds (`BENCH_RUNS`, default 5; one run of each per round, so a
//! change in the load of this shared machine falls on all of them alike):
//! - `stitch-bridge --config C validate --account bench stock.csv.gz.pgp` (the release binary);
//! - the same on the plain `stock.csv` and on `stock.csv.gz`, and on the plain file without an
//!   account (no key to load);
//! - `sh -c 'gpg --decrypt F | gunzip > /dev/null'` on the same encrypted file;
//! - ours and that pipeline on a one-row file wrapped the same way: the fixed cost.
//!
//! MB/s is always the *plain* size over wall time (process start included), median of the
//! runs; peak RSS is each child's own `ru_maxrss` (`wait4`), the highest of the runs. A file
//! twice the size, wrapped the same way, shows whether memory stays flat.
//!
//! Where the time goes: the bench binary itself runs the stages of the bridge's unwrapping
//! (`--stage`: rPGP decryption alone, gzip inflation alone, both into a sink, both into a
//! temporary file as `validate` does), each as a child that times its phases (key load, opening
//! the message, streaming) and prints them.
//!
//! `cargo bench --bench wrapped [-- --quick]`.

mod common;
#[path = "../tests/support_pgp/mod.rs"]
mod support_pgp;

use common::{mb, measure, mib, note, row, Measured, Rng};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use stitch_bridge::wrap::{self, pgp::OurKey, Layer};

const BIN: &str = env!("CARGO_BIN_EXE_stitch-bridge");
const RSS_LIMIT: u64 = 64 * 1024 * 1024;
/// The environment variables the throwaway configuration names.
const PASS_ENV: &str = "BENCH_PGP_PASSPHRASE";
const TOKEN_ENV: &str = "BENCH_STITCH_TOKEN";
/// What our run may lose against `gpg --decrypt | gunzip`, which only unwraps (and does so in two
/// processes at once) while ours unwraps, writes the content to a temporary file and validates it.
const TARGET_VS_GPG: f64 = 0.5;
/// Ours against plain validation followed by `gpg | gunzip` (the two steps one after the other):
/// at least this fraction of that speed; the rest is what the temporary file may cost.
const TARGET_VS_SERIAL: f64 = 0.8;

/// GTIN check digit over the leading digits (as `bench/validate.rs`).
fn check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits.iter().rev().enumerate().map(|(i, d)| (*d as u32) * if i % 2 == 0 { 3 } else { 1 }).sum();
    ((10 - sum % 10) % 10) as u8
}

fn barcode(n: u64) -> String {
    let body = format!("{:011}", n % 100_000_000_000);
    let digits: Vec<u8> = body.bytes().map(|b| b - b'0').collect();
    format!("{body}{}", check_digit(&digits))
}

/// Writes inventory rows (the records of `bench/validate.rs`, same seed) until at least
/// `target` bytes are out; returns (rows, bytes).
fn gen_inventory(w: &mut impl Write, target: u64) -> io::Result<(u64, u64)> {
    let mut rng = Rng(42);
    const WORDS: [&str; 8] = ["Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey", "Cable", "Bracket", "Valve"];
    let header = "sku,quantity,name,barcode\n";
    w.write_all(header.as_bytes())?;
    let mut bytes = header.len() as u64;
    let mut line = String::with_capacity(128);
    let mut i = 0u64;
    while bytes < target {
        use std::fmt::Write as _;
        let q = rng.below(5000);
        let word = WORDS[rng.below(8) as usize];
        line.clear();
        let _ = write!(line, "SKU-{i:08},{q},");
        if rng.below(4) == 0 {
            let _ = write!(line, "\"{word}, size {}\"", rng.below(50));
        } else {
            let _ = write!(line, "{word} {i}");
        }
        line.push(',');
        if rng.below(3) != 0 {
            line.push_str(&barcode(10_000_000 + i));
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
        i += 1;
    }
    Ok((i, bytes))
}

/// The generated inventory, `gzip -6`'d on the way (and kept in the clear too when `plain` is
/// given). Returns (rows, plain bytes).
fn gen_gzipped(gz: &Path, plain: Option<&Path>, target: u64) -> (u64, u64) {
    let out = fs::File::create(gz).expect("create the .gz file");
    let mut child = Command::new("gzip")
        .args(["-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .expect("run gzip (is it installed?)");
    let pipe = child.stdin.take().expect("gzip's stdin");
    struct Tee<A: Write, B: Write>(A, Option<B>);
    impl<A: Write, B: Write> Write for Tee<A, B> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write_all(buf)?;
            if let Some(b) = &mut self.1 {
                b.write_all(buf)?;
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()?;
            match &mut self.1 {
                Some(b) => b.flush(),
                None => Ok(()),
            }
        }
    }
    let plain = plain.map(|p| BufWriter::with_capacity(1 << 20, fs::File::create(p).expect("create the plain file")));
    let mut w = Tee(BufWriter::with_capacity(1 << 20, pipe), plain);
    let counts = gen_inventory(&mut w, target).expect("write the inventory");
    w.flush().expect("flush the inventory");
    drop(w);
    assert!(child.wait().expect("wait for gzip").success(), "gzip failed");
    counts
}

/// A throwaway configuration: one account on a local drop, our exported secret key with its
/// passphrase from the environment, limits raised for the 2x file.
fn bench_config(dir: &Path, secret_key: &[u8]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir.join("drop")).expect("drop folder");
    let key = dir.join("bridge.sec.asc");
    fs::write(&key, secret_key).expect("write the secret key");
    let p = dir.join("stitch-bridge.toml");
    fs::write(
        &p,
        format!(
            "[ledger]\npath = \"ledger.sqlite\"\n\n[[account]]\nname = \"bench\"\ndrop = \"drop\"\n\
             stitch_url = \"http://127.0.0.1:9\"\ntoken_env = \"{TOKEN_ENV}\"\n\
             max_rows = 100000000\nmax_file_bytes = 8000000000\n\
             pgp_secret_key_file = \"bridge.sec.asc\"\npgp_passphrase_env = \"{PASS_ENV}\"\n"
        ),
    )
    .expect("write the configuration");
    // Private, as the binary asks of a config and a key file (it warns otherwise).
    for f in [&p, &key] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    p
}

/// Several runs of one measurement, in order.
struct Runs {
    walls: Vec<Duration>,
    max_rss: u64,
}

impl Runs {
    fn sorted(&self) -> Vec<Duration> {
        let mut w = self.walls.clone();
        w.sort();
        w
    }

    fn median(&self) -> Duration {
        let w = self.sorted();
        let n = w.len();
        if n % 2 == 1 {
            w[n / 2]
        } else {
            (w[n / 2 - 1] + w[n / 2]) / 2
        }
    }

    /// Median rate of `bytes`, MB/s.
    fn rate(&self, bytes: u64) -> f64 {
        mb(bytes) / self.median().as_secs_f64()
    }

    /// "123.4 MB/s (3 runs: 110.0-130.2)": median and the range over the runs.
    fn rate_text(&self, bytes: u64) -> String {
        let w = self.sorted();
        let r = |d: &Duration| mb(bytes) / d.as_secs_f64();
        if w.len() == 1 {
            return format!("{:.1} MB/s (1 run)", self.rate(bytes));
        }
        format!("{:.1} MB/s ({} runs: {:.1}-{:.1})", self.rate(bytes), w.len(), r(&w[w.len() - 1]), r(&w[0]))
    }

    fn secs_text(&self) -> String {
        let w = self.sorted();
        format!("{:.3} s ({:.3}-{:.3})", self.median().as_secs_f64(), w[0].as_secs_f64(), w[w.len() - 1].as_secs_f64())
    }
}

fn runs_setting() -> usize {
    std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1)
}

/// `n` rounds of every measurement in turn (one run of each per round), so that a change in the
/// load of this shared machine falls on all of them alike rather than on whichever ran then.
fn rounds<const K: usize>(n: usize, mut each: [&mut dyn FnMut() -> Measured; K]) -> [Runs; K] {
    let mut out: [Runs; K] = std::array::from_fn(|_| Runs { walls: Vec::new(), max_rss: 0 });
    for _ in 0..n {
        for (f, r) in each.iter_mut().zip(out.iter_mut()) {
            let m = f();
            r.walls.push(m.wall);
            r.max_rss = r.max_rss.max(m.max_rss);
        }
    }
    out
}

fn repeat(n: usize, mut f: impl FnMut() -> Measured) -> Runs {
    let mut r = Runs { walls: Vec::new(), max_rss: 0 };
    for _ in 0..n {
        let m = f();
        r.walls.push(m.wall);
        r.max_rss = r.max_rss.max(m.max_rss);
    }
    r
}

/// `stitch-bridge --config C validate --account bench --kind inventory FILE`, which must find
/// the generated file clean.
fn ours(config: &Path, file: &Path) -> Measured {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(["validate", "--account", "bench", "--kind", "inventory"]).arg(file);
    cmd.env(PASS_ENV, support_pgp::PASSPHRASE).env(TOKEN_ENV, "t");
    let m = measure(&mut cmd, None).expect("run stitch-bridge");
    assert_eq!(m.status, 0, "stitch-bridge validate did not pass the generated file {}", file.display());
    m
}

/// `gpg --decrypt F | gunzip > /dev/null` with the key of `home` (its passphrase from a file).
fn gpg_gunzip(home: &Path, pass_file: &Path, file: &Path) -> Measured {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"gpg --homedir "$1" --batch --no-tty --quiet --pinentry-mode loopback --passphrase-file "$2" --decrypt "$3" | gunzip > /dev/null"#)
        .arg("sh")
        .arg(home)
        .arg(pass_file)
        .arg(file);
    let m = measure(&mut cmd, None).expect("run gpg | gunzip");
    assert_eq!(m.status, 0, "gpg --decrypt | gunzip failed on {}", file.display());
    m
}

/// Bytes `gpg --decrypt F | gunzip` gives (untimed): the comparison reads the whole file.
fn gpg_gunzip_bytes(home: &Path, pass_file: &Path, file: &Path) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"gpg --homedir "$1" --batch --no-tty --quiet --pinentry-mode loopback --passphrase-file "$2" --decrypt "$3" | gunzip | wc -c"#)
        .arg("sh")
        .arg(home)
        .arg(pass_file)
        .arg(file)
        .output()
        .expect("run gpg | gunzip | wc");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// The medians of a stage's phases (seconds), as the child timed them.
struct Phases {
    /// `OurKey::load`: parse, then unlock each usable component (one S2K derivation each).
    load: f64,
    /// Opening the message: packet headers, our key unlocked again, the session key.
    setup: f64,
    /// Streaming the content through.
    stream: f64,
}

/// One stage of the bridge's unwrapping, run by this program as a child (`--stage`), which
/// times its own phases and prints them.
fn stage(which: &str, key: &Path, file: &Path, n: usize, scratch: &Path) -> (Runs, Phases) {
    let me = std::env::current_exe().expect("own path");
    let out = scratch.join(format!("stage-{which}.out"));
    let mut phases: Vec<[f64; 3]> = Vec::new();
    let runs = repeat(n, || {
        let mut cmd = Command::new(&me);
        cmd.args(["--stage", which]).arg(key).arg(file).env(PASS_ENV, support_pgp::PASSPHRASE);
        let m = measure(&mut cmd, Some(&out)).expect("run a stage");
        assert_eq!(m.status, 0, "stage {which} failed on {}", file.display());
        let text = fs::read_to_string(&out).unwrap_or_default();
        let mut p = [0.0; 3];
        for (i, name) in ["load", "setup", "stream"].iter().enumerate() {
            p[i] = text
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")).and_then(|v| v.parse().ok()))
                .unwrap_or(0.0);
        }
        phases.push(p);
        m
    });
    let median = |i: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (runs, Phases { load: median(0), setup: median(1), stream: median(2) })
}

/// The child side of [`stage`]: the calls `validate` makes, into a sink or a temporary file
/// (with `std::io::copy`, as `validate` copies). Prints `load= setup= stream= bytes=`.
fn run_stage(which: &str, key: &Path, file: &Path) -> ! {
    use std::time::Instant;
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("stage {which}: {what}: {e}");
        std::process::exit(2)
    };
    let pass = std::env::var(PASS_ENV).ok();
    let input =
        || -> Box<dyn Read + Send> { Box::new(fs::File::open(file).unwrap_or_else(|e| fail("open the file", &e))) };
    let t0 = Instant::now();
    let k = match which {
        "gunzip" => None,
        _ => Some(OurKey::load(key, pass.as_deref()).unwrap_or_else(|e| fail("load the key", &e))),
    };
    let t1 = Instant::now();
    let decrypt = |r| match &k {
        Some(k) => wrap::pgp::decrypt(r, k, None, false),
        None => Err(wrap::WrapError::PgpCorrupt("no key in this stage".into())),
    };
    let layers: &[Layer] = match which {
        "decrypt" => &[Layer::Pgp],
        "gunzip" => &[Layer::Gzip],
        "unwrap" | "unwrap-file" | "unwrap-file-1m" => &[Layer::Pgp, Layer::Gzip],
        other => fail("unknown stage", &other),
    };
    let mut r = wrap::unwrap_stream(input(), layers, &decrypt, u64::MAX).unwrap_or_else(|e| fail("unwrap", &e));
    let t2 = Instant::now();
    let copied = if which.starts_with("unwrap-file") {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail("temp dir", &e));
        let mut f = fs::File::create(dir.path().join("stock.csv")).unwrap_or_else(|e| fail("temp file", &e));
        if which == "unwrap-file-1m" {
            // The same copy with 1 MiB reads and writes instead of `io::copy`'s 8 KiB.
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break total,
                    Ok(k) => {
                        f.write_all(&buf[..k]).unwrap_or_else(|e| fail("write", &e));
                        total += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => fail("read", &e),
                }
            }
        } else {
            io::copy(&mut r, &mut f).unwrap_or_else(|e| fail("read", &e))
        }
    } else {
        io::copy(&mut r, &mut io::sink()).unwrap_or_else(|e| fail("read", &e))
    };
    let t3 = Instant::now();
    let s = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!("load={:.4} setup={:.4} stream={:.4} bytes={copied}", s(t0, t1), s(t1, t2), s(t2, t3));
    std::process::exit(0)
}

/// `stitch-bridge validate --kind inventory FILE` without an account (no configuration, no key):
/// the validator alone.
fn ours_no_account(file: &Path) -> Measured {
    let m = measure(Command::new(BIN).args(["validate", "--kind", "inventory"]).arg(file), None)
        .expect("run stitch-bridge");
    assert_eq!(m.status, 0, "stitch-bridge validate did not pass the generated file {}", file.display());
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--stage") {
        match (args.get(i + 1), args.get(i + 2), args.get(i + 3)) {
            (Some(w), Some(k), Some(f)) => run_stage(w, Path::new(k), Path::new(f)),
            _ => {
                eprintln!("usage: --stage NAME KEY FILE");
                std::process::exit(2)
            }
        }
    }
    if !support_pgp::gpg_available() {
        note("wrapped: gpg (GnuPG) is not installed; the wrapped-file rows were not measured");
        return;
    }
    let quick = common::quick();
    let target_mb = common::size("BENCH_WRAPPED_MB", 200, 20) as u64;
    let n = runs_setting();
    let tmp = tempfile::Builder::new().prefix("bench-wrapped-").tempdir().expect("temp dir");
    let d = tmp.path();
    let inv = d.join("inventory");
    fs::create_dir_all(&inv).expect("inventory folder");
    let plain = inv.join("stock.csv");
    let gz = inv.join("stock.csv.gz");
    let pgp = inv.join("stock.csv.gz.pgp");
    let plain2 = inv.join("stock2x.csv");
    let gz2 = inv.join("stock2x.csv.gz");
    let pgp2 = inv.join("stock2x.csv.gz.pgp");
    let gz_tiny = inv.join("one.csv.gz");
    let pgp_tiny = inv.join("one.csv.gz.pgp");

    // The key, as docs/wrapped-files.md makes it: ed25519 primary, cv25519 encryption subkey,
    // protected as gpg protects an export by default (its calibrated S2K count), as an
    // operator's key is: unlocking it is part of the cost of every run.
    let g = support_pgp::Gpg::with_default_protection();
    let key = g.curve25519("stitch-bridge bench <bench@example.com>");
    let secret = g.export_secret(&key.fpr, true);
    let counts = g.protect_counts(&secret);
    let config = bench_config(&d.join("conf"), &secret);
    let key_file = d.join("conf").join("bridge.sec.asc");
    let pass_file = d.join("conf").join("passphrase");
    fs::write(&pass_file, support_pgp::PASSPHRASE).expect("passphrase file");
    let encrypt = |from: &Path, to: &Path| {
        let (f, t) = (from.to_string_lossy(), to.to_string_lossy());
        g.ok(&["--output", &t, "--recipient", &key.fpr, "--encrypt", &f], b"");
    };

    let (rows, plain_bytes) = gen_gzipped(&gz, Some(&plain), target_mb * 1_000_000);
    encrypt(&gz, &pgp);
    let (rows2, plain2_bytes) = gen_gzipped(&gz2, Some(&plain2), 2 * target_mb * 1_000_000);
    encrypt(&gz2, &pgp2);
    fs::remove_file(&gz2).expect("remove the 2x .gz");
    gen_gzipped(&gz_tiny, None, 1);
    encrypt(&gz_tiny, &pgp_tiny);
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (gz_bytes, pgp_bytes, pgp2_bytes) = (size(&gz), size(&pgp), size(&pgp2));
    let packets = String::from_utf8_lossy(&g.ok(&["--list-packets", &pgp.to_string_lossy()], b"")).into_owned();
    let compressed_again = packets.contains("compressed packet");
    println!(
        "wrapped: {rows} rows, {:.1} MB plain, {:.1} MB gzip, {:.1} MB OpenPGP{}; 2x: {rows2} rows, {:.1} MB plain, {:.1} MB OpenPGP; {}",
        mb(plain_bytes),
        mb(gz_bytes),
        mb(pgp_bytes),
        if compressed_again { " (gpg compressed again)" } else { " (gpg did not compress again)" },
        mb(plain2_bytes),
        mb(pgp2_bytes),
        g.version()
    );
    let got = gpg_gunzip_bytes(g.home(), &pass_file, &pgp);
    assert_eq!(got, plain_bytes, "gpg --decrypt | gunzip does not give the plain file back");

    // Untimed warm-up: files in the page cache, the agent started, binaries loaded.
    let _ = ours(&config, &pgp);
    let home = g.home();
    let [wrapped, plain_runs, gpg, gz_only, bare, tiny, gpg_tiny] = rounds(
        n,
        [
            &mut || ours(&config, &pgp),
            &mut || ours(&config, &plain),
            &mut || gpg_gunzip(home, &pass_file, &pgp),
            &mut || ours(&config, &gz),
            &mut || ours_no_account(&plain),
            &mut || ours(&config, &pgp_tiny),
            &mut || gpg_gunzip(home, &pass_file, &pgp_tiny),
        ],
    );
    let n2 = 1.max(n / 2);
    let [big, big_plain] = rounds(n2, [&mut || ours(&config, &pgp2), &mut || ours(&config, &plain2)]);

    let (rw, rp, rg) = (wrapped.rate(plain_bytes), plain_runs.rate(plain_bytes), gpg.rate(plain_bytes));
    println!(
        "  wrapped {}, {:.1} MiB; plain {}, {:.1} MiB; gpg | gunzip {}, {:.1} MiB (largest of the pipeline's processes)",
        wrapped.rate_text(plain_bytes),
        mib(wrapped.max_rss),
        plain_runs.rate_text(plain_bytes),
        mib(plain_runs.max_rss),
        gpg.rate_text(plain_bytes),
        mib(gpg.max_rss),
    );
    println!(
        "  2x: wrapped {}, {:.1} MiB; plain {}, {:.1} MiB",
        big.rate_text(plain2_bytes),
        mib(big.max_rss),
        big_plain.rate_text(plain2_bytes),
        mib(big_plain.max_rss)
    );

    let what = format!("wrapped: {target_mb} MB inventory, gzip+OpenPGP, validated");
    row(
        &what,
        &format!("{}, peak RSS {:.1} MiB", wrapped.rate_text(plain_bytes), mib(wrapped.max_rss)),
        &format!("gpg --decrypt piped to gunzip {}", gpg.rate_text(plain_bytes)),
        &format!("{:.2}x", rw / rg),
        &format!(">= {TARGET_VS_GPG:.2}x, RSS < 64 MiB"),
        Some(rw / rg >= TARGET_VS_GPG && wrapped.max_rss < RSS_LIMIT),
    );
    // Plain validation, then unwrapping at gpg | gunzip's speed, one after the other.
    let serial = mb(plain_bytes) / (plain_runs.median().as_secs_f64() + gpg.median().as_secs_f64());
    let want = TARGET_VS_SERIAL * serial / rp;
    row(
        "wrapped: plain vs wrapped",
        &format!("wrapped {rw:.1} MB/s"),
        &format!("plain {}, peak RSS {:.1} MiB", plain_runs.rate_text(plain_bytes), mib(plain_runs.max_rss)),
        &format!("{:.2}x", rw / rp),
        &format!(">= {want:.2}x ({TARGET_VS_SERIAL} of plain validation and gpg+gunzip in series, {serial:.1} MB/s)"),
        Some(rw / rp >= want),
    );
    // Below 1,048,576 rows the validator's repeated-SKU check is still filling its in-memory
    // bound, so its own peak RSS grows with the rows: flatness shows only past it.
    let flat_shown = rows >= 1 << 20;
    row(
        &format!("wrapped peak RSS: {target_mb} / {} MB gzip+OpenPGP", 2 * target_mb),
        &format!("{:.1} / {:.1} MiB", mib(wrapped.max_rss), mib(big.max_rss)),
        &format!("plain {:.1} / {:.1} MiB", mib(plain_runs.max_rss), mib(big_plain.max_rss)),
        "-",
        "< 64 MiB, flat (2x: <= +25%)",
        flat_shown.then(|| {
            wrapped.max_rss.max(big.max_rss) < RSS_LIMIT && big.max_rss as f64 <= wrapped.max_rss as f64 * 1.25
        }),
    );
    if !flat_shown {
        note(&format!(
            "wrapped peak RSS: {rows} rows are below the validator's in-memory bound of 1048576 SKUs, whose own memory still grows with the rows (see plain); flatness is judged at full size only{}",
            if quick { " (quick run)" } else { "" }
        ));
    }

    // Where the time goes: the stages of unwrapping, alone, each timing its own phases.
    let (_, dec) = stage("decrypt", &key_file, &pgp, n, d);
    let (_, inflate) = stage("gunzip", &key_file, &gz, n, d);
    let (_, sink) = stage("unwrap", &key_file, &pgp, n, d);
    let (_, file) = stage("unwrap-file", &key_file, &pgp, n, d);
    let (_, file_1m) = stage("unwrap-file-1m", &key_file, &pgp, n, d);
    note(&format!(
        "wrapped, where the time goes ({:.1} MB plain, {:.1} MB gzip, {:.1} MB OpenPGP; medians of {n} runs, wall incl. process start): \
         validate .gz.pgp {}, .gz {}, plain {} (with the account: its key is loaded at config load), plain without an account {}; \
         in-process phases: key load (parse + unlock each usable component) {:.3} s, opening the message (unlock again + session key) {:.3} s, \
         decrypt alone {:.3} s ({:.0} MB/s of ciphertext), inflate alone {:.3} s ({:.0} MB/s out), decrypt+inflate to a sink {:.3} s, to a temp file {:.3} s (io::copy, 8 KiB at a time; with 1 MiB reads and writes {:.3} s)",
        mb(plain_bytes),
        mb(gz_bytes),
        mb(pgp_bytes),
        wrapped.secs_text(),
        gz_only.secs_text(),
        plain_runs.secs_text(),
        bare.secs_text(),
        dec.load,
        dec.setup,
        dec.stream,
        mb(pgp_bytes) / dec.stream,
        inflate.stream,
        mb(plain_bytes) / inflate.stream,
        sink.stream,
        file.stream,
        file_1m.stream,
    ));
    note(&format!(
        "wrapped, fixed cost (a one-row file, gzip+OpenPGP): ours {}, gpg --decrypt | gunzip {}; both unlock the passphrase-protected key (gpg's agent does it for gpg)",
        tiny.secs_text(),
        gpg_tiny.secs_text()
    ));
    note(&format!(
        "wrapped: {}; gzip -6 by the gzip binary; encrypted by gpg to a cv25519 subkey; secret key S2K counts {}; peak RSS of gpg | gunzip is the largest of its processes ({:.1} MiB)",
        g.version(),
        counts.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        mib(gpg.max_rss)
    ));
}
