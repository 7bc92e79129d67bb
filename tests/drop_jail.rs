//! The drop is a jail (local folder): nothing below the drop root is reached through a link,
//! entries that are not regular files and names the bridge cannot carry through are moved
//! aside with a result, a file that changes while it is read is not processed, and files we
//! write honour the umask or `file_mode`. Black-box through `stitch-bridge run --once`, on a
//! real folder, with the simulator on loopback.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STOCK: &str = "sku,quantity\nRED,7\nBLUE,3\n";

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every path under `dir`, relative, sorted (links listed, not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(&p, base, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let v = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask line");
    u32::from_str_radix(v.trim(), 8).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ------------------------------------------------------------------------------------------
// linked folders

/// With `folder` (drop-relative) a link to a folder outside the drop holding a valid stock
/// file, one run: the account needs attention (exit 5) naming the link, nothing is read, sent, planted
/// or moved, and the inbound file stays where it was.
fn linked_folder_stops_the_account(folder: &str) {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.csv"), STOCK).unwrap();
    let before = tree(outside.path());
    let link = env.path(folder);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(outside.path(), &link).unwrap();
    if folder != "inbound/inventory" {
        env.put("inbound/inventory/stock.csv", STOCK);
    }
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 5, "{folder}: needs attention: {}", text(&out));
    assert!(text(&out).contains("NEEDS ATTENTION (drop_symlink)"), "{folder}: {}", text(&out));
    assert!(env.exists("ALERT-acme.txt"), "{folder}: the alert file says what to do");
    assert!(text(&out).contains(&format!("{folder} in the drop is a symbolic link")), "{folder}: {}", text(&out));
    assert_eq!(tree(outside.path()), before, "{folder}: nothing planted, moved or removed outside the drop");
    assert_eq!(env.write_requests(), 0, "{folder}: nothing sent to Stitch");
    // (Listing archive/ here would follow the link; the outside tree above covers that case.)
    assert!(env.list("rejected").is_empty(), "{folder}: nothing moved");
    assert!(folder.starts_with("archive/") || env.archived().is_empty(), "{folder}: nothing moved");
    assert!(env.list("results").is_empty() || folder == "results", "{folder}: no result written");
    if folder != "inbound/inventory" {
        assert!(env.exists("inbound/inventory/stock.csv"), "{folder}: the inbound file stays");
    }
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{folder}: the link is left for a person");
}

#[test]
fn linked_results_folder() {
    linked_folder_stops_the_account("results");
}

#[test]
fn linked_errors_folder() {
    linked_folder_stops_the_account("errors");
}

#[test]
fn linked_inbound_folder() {
    linked_folder_stops_the_account("inbound/inventory");
}

#[test]
fn linked_outbound_folder() {
    linked_folder_stops_the_account("outbound/orders");
}

#[test]
fn linked_archive_date_folder() {
    linked_folder_stops_the_account(&format!("archive/{}", today()));
}

#[test]
fn the_drop_root_itself_may_be_a_link() {
    let env = Env::new();
    let real = env.dir.path().join("real-drop");
    fs::rename(&env.drop, &real).unwrap();
    symlink(&real, &env.drop).unwrap();
    env.put("inbound/inventory/stock.csv", STOCK);
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(env.archived(), vec!["stock.csv"]);
}

// ------------------------------------------------------------------------------------------
// entries that are not regular files

#[test]
fn links_fifos_sockets_and_folders_are_moved_aside_with_a_result() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.csv"), "sku,quantity\nSECRET-SKU,1\n").unwrap();
    env.put("inbound/inventory/good.csv", STOCK);
    let inb = env.path("inbound/inventory");
    symlink(outside.path().join("secret.csv"), inb.join("link.csv")).unwrap();
    symlink(outside.path(), inb.join("linkdir")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        inb.join("pipe.csv"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(inb.join("sock.csv")).unwrap();
    fs::create_dir(inb.join("sub")).unwrap();
    fs::write(inb.join("sub/inner.csv"), STOCK).unwrap();
    // An uploader's hidden staging folder is a dot name: never input, left where it is.
    fs::create_dir(inb.join(".staging")).unwrap();

    let out = env.bin(&["run", "--once"]);
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert_eq!(env.list("inbound/inventory"), vec![".staging"], "only the hidden folder stays");
    assert_eq!(env.archived(), vec!["good.csv"]);
    assert_eq!(env.list("rejected"), vec!["link.csv", "linkdir", "pipe.csv", "sock.csv", "sub"]);
    let rej = env.path("rejected");
    let ft = |n: &str| fs::symlink_metadata(rej.join(n)).unwrap().file_type();
    assert!(ft("link.csv").is_symlink() && ft("linkdir").is_symlink(), "the links themselves were moved");
    assert!(ft("sub").is_dir() && rej.join("sub/inner.csv").exists());
    for (name, what) in [
        ("link.csv", "a symbolic link"),
        ("linkdir", "a symbolic link"),
        ("pipe.csv", "a named pipe (FIFO)"),
        ("sock.csv", "a socket"),
        ("sub", "a folder"),
    ] {
        let res = fs::read_to_string(env.path(&format!("results/{name}.result.csv"))).unwrap();
        assert!(res.contains(what), "{name}: {res}");
    }
    assert_eq!(tree(outside.path()), vec!["secret.csv"], "the link targets stay where they were");
    for f in tree(&env.drop) {
        let p = env.drop.join(&f);
        if fs::symlink_metadata(&p).unwrap().is_file() {
            assert!(!fs::read_to_string(&p).unwrap_or_default().contains("SECRET-SKU"), "{f} holds the secret");
        }
    }
    assert!(!env.state().products.contains_key("SECRET-SKU"));
}

// ------------------------------------------------------------------------------------------
// names

#[test]
fn long_and_non_utf8_names_are_moved_aside_and_do_not_block_the_account() {
    let env = Env::new();
    let longest = format!("{}.csv", "l".repeat(235)); // 239 bytes: carried through
    let too_long = format!("{}.csv", "x".repeat(246)); // 250 bytes
    let raw: &[u8] = b"stock-\xff\xfe.csv";
    env.put(&format!("inbound/inventory/{longest}"), STOCK);
    env.put(&format!("inbound/inventory/{too_long}"), STOCK);
    fs::write(env.path("inbound/inventory").join(OsStr::from_bytes(raw)), STOCK).unwrap();
    env.put("inbound/inventory/good.csv", "sku,quantity\nGREEN,2\n");

    let out = env.bin(&["run", "--once"]);
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert!(env.list("inbound/inventory").is_empty(), "{:?}", env.list("inbound/inventory"));
    let archived = env.archived();
    assert!(archived.contains(&"good.csv".to_string()) && archived.contains(&longest), "{archived:?}");
    assert!(env.exists(&format!("results/{longest}.result.csv")));
    let rejected = env.list("rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.contains(&"stock-\u{fffd}\u{fffd}.csv".to_string()), "{rejected:?}");
    assert!(rejected.iter().all(|n| n.len() <= 200), "{rejected:?}");
    for n in &rejected {
        let res = fs::read_to_string(env.path(&format!("results/{n}.result.csv"))).unwrap();
        assert!(res.contains("file name refused"), "{n}: {res}");
    }
    for f in tree(&env.drop) {
        assert!(f.rsplit('/').all(|c| c.len() <= 255), "{f}");
    }
    // Later runs go on.
    env.put("inbound/inventory/next.csv", "sku,quantity\nRED,9\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(env.archived().contains(&"next.csv".to_string()));
}

#[test]
fn a_carried_name_gets_derived_names_that_fit_even_when_they_collide() {
    let env = Env::new();
    let longest = format!("{}.csv", "k".repeat(235));
    // Someone else's file already holds the result name.
    env.put(&format!("results/{longest}.result.csv"), "not ours");
    env.put(&format!("inbound/inventory/{longest}"), "sku,quantity\nRED,abc\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let results = env.list("results");
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|n| n.len() <= 255), "{results:?}");
    assert_eq!(env.list("errors").len(), 1);
    // Its only row was refused: nothing applied, so it is in rejected/ under its own name.
    assert_eq!(env.list("rejected"), vec![longest]);
}

// ------------------------------------------------------------------------------------------
// a file that changes while it is read

#[test]
fn a_file_growing_while_read_is_not_processed_until_it_stands_still() {
    let env = Env::new();
    let path = env.path("inbound/inventory/growing.csv");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "sku,quantity\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            let mut n = 0u64;
            // A steady trickle, as an upload is: a line every millisecond (pacing, not
            // synchronisation). A thread that sleeps is woken promptly even on a busy machine,
            // where one that only yields can be starved for the whole of the bridge's read.
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                writeln!(f, "SKU-{n},1").unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(&path).unwrap().len() < 512 {
        assert!(Instant::now() < deadline, "the writer never wrote");
        std::thread::yield_now();
    }
    let out = env.bin(&["run", "--once"]);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(path.exists(), "still in inbound/: {}", text(&out));
    assert!(env.list("results").is_empty() && env.archived().is_empty() && env.list("rejected").is_empty());
    assert_eq!(env.write_requests(), 0, "nothing applied");

    let out = env.bin(&["run", "--once"]);
    assert!(matches!(code(&out), 0 | 1), "{}", text(&out));
    assert!(!path.exists(), "taken once it stood still: {}", text(&out));
    assert_eq!(env.list("results"), vec!["growing.csv.result.csv"]);
}

// ------------------------------------------------------------------------------------------
// modes of the files we write

#[test]
fn written_files_follow_the_umask() {
    let env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,1\nRED2,abc\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let want = 0o666 & !umask();
    assert_eq!(mode(&env.path("results/stock.csv.result.csv")), want);
    assert_eq!(mode(&env.path("errors/stock.csv.errors.csv")), want);
}

#[test]
fn file_mode_overrides_the_umask() {
    let env = Env::with(base_seed(), "file_mode = \"0640\"\n");
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,1\nRED2,abc\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(mode(&env.path("results/stock.csv.result.csv")), 0o640);
    assert_eq!(mode(&env.path("errors/stock.csv.errors.csv")), 0o640);
}

#[test]
fn a_bad_file_mode_is_refused_at_load() {
    let env = Env::new();
    let text_cfg = fs::read_to_string(&env.config_path).unwrap() + "file_mode = \"0999\"\n";
    fs::write(&env.config_path, text_cfg).unwrap();
    let out = env.bin(&["run", "--once"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("file_mode"), "{}", text(&out));
}

// ------------------------------------------------------------------------------------------
// validate

#[test]
fn validate_names_a_fifo_instead_of_waiting_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stock.csv");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("validate")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("validate is waiting on the FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("a named pipe (FIFO)"), "{}", text(&out));
}
