//! Wrapped inbound files end to end, in process against the simulator: gzip and zip taken off
//! as the file is read, a zip's members each a file of their own, and the wrappers' faults
//! (corrupt, a bomb) refusing the file whole with its code.

mod common;

use common::*;
use std::io::Write;

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn a_gzipped_snapshot_is_applied_under_its_inner_name() {
    let env = Env::new();
    put_bytes(&env, "inbound/inventory/stock.csv.gz", &gz(b"sku,quantity\nRED,7\nBLUE,-1\n"));
    let r = env.inbound_only();
    assert!(acct(&r).fatal.is_empty(), "{:?}", acct(&r));
    assert_eq!(stock(&env, "RED"), 7);
    let result = env.result("stock.csv");
    assert_eq!(outcomes(&result), vec![("RED".into(), "updated".into()), ("BLUE".into(), "rejected".into())]);
    assert_eq!(codes(&env.errors("stock.csv")), vec!["negative_quantity"], "the error file quotes the unwrapped row");
    assert_eq!(env.errors("stock.csv")[0]["sku"], "BLUE");
    assert_eq!(env.archived(), vec!["stock.csv.gz"], "the original moves under its own name");
    assert!(env.list("inbound/inventory").is_empty());
}

#[test]
fn a_zip_yields_each_data_member_as_a_file_with_its_own_result() {
    let env = Env::new();
    let archive = zip_of(&[
        ("a.csv", b"sku,quantity\nRED,8\n"),
        ("notes/readme.txt", b"not data"),
        ("sub/b.csv", b"sku,quantity\nBLUE,9\nGREEN,x\n"),
    ]);
    put_bytes(&env, "inbound/inventory/batch.zip", &archive);
    let r = env.inbound_only();
    assert!(acct(&r).fatal.is_empty(), "{:?}", acct(&r));
    assert_eq!((stock(&env, "RED"), stock(&env, "BLUE"), stock(&env, "GREEN")), (8, 9, 5));
    let b = stitch_bridge::wrap::archive::member_display_name("sub/b.csv");
    let sep = stitch_bridge::wrap::archive::SEPARATOR;
    assert_eq!(outcomes(&env.result(&format!("batch.zip{sep}a.csv"))), vec![("RED".into(), "updated".into())]);
    let rb = env.result(&format!("batch.zip{sep}{b}"));
    assert_eq!(outcomes(&rb), vec![("BLUE".into(), "updated".into()), ("GREEN".into(), "rejected".into())]);
    assert_eq!(codes(&env.errors(&format!("batch.zip{sep}{b}"))), vec!["bad_integer"]);
    // The archive's own result: a row per member, the skipped one named with why.
    let whole = env.result("batch.zip");
    let by_member: Vec<(String, String)> = outcomes(&whole);
    assert_eq!(
        by_member,
        vec![
            ("a.csv".into(), "updated".into()),
            ("notes/readme.txt".into(), "skipped".into()),
            ("sub/b.csv".into(), "updated".into())
        ],
        "{whole:?}"
    );
    assert_eq!(env.archived(), vec!["batch.zip"]);
    // Nothing is taken twice: the same archive again (same name) skips every member.
    let writes = env.write_requests();
    put_bytes(&env, "inbound/inventory/batch.zip", &archive);
    env.inbound_only();
    assert_eq!(env.write_requests(), writes, "a re-sent archive posts nothing again");
}

#[test]
fn a_corrupt_gzip_is_rejected_whole_with_bad_archive() {
    let env = Env::new();
    let mut bytes = gz(b"sku,quantity\nRED,3\n");
    let n = bytes.len();
    bytes.truncate(n - 6); // the CRC and length trailer cut off
    put_bytes(&env, "inbound/inventory/cut.csv.gz", &bytes);
    env.inbound_only();
    assert_eq!(stock(&env, "RED"), 50, "nothing of a corrupt file is applied");
    assert_eq!(env.list("rejected"), vec!["cut.csv.gz"]);
    assert_eq!(codes(&env.errors("cut.csv")), vec!["bad_archive"]);
    assert_eq!(env.result("cut.csv")[0]["outcome"], "rejected");
}

#[test]
fn a_gzip_bomb_is_refused_as_file_too_large() {
    let env = Env::with(base_seed(), "max_file_bytes = 1000000\n");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"sku,quantity\n").unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 1_000_000, "the bomb itself is under the limit: {}", bomb.len());
    put_bytes(&env, "inbound/inventory/bomb.csv.gz", &bomb);
    env.inbound_only();
    assert_eq!(env.list("rejected"), vec!["bomb.csv.gz"]);
    assert_eq!(codes(&env.errors("bomb.csv")), vec!["file_too_large"]);
}

#[test]
fn a_zip_that_is_not_one_is_rejected_with_bad_archive() {
    let env = Env::new();
    env.put("inbound/orders/orders.zip", "order_ref,sku\nPO-1,RED\n");
    env.inbound_only();
    assert_eq!(env.list("rejected"), vec!["orders.zip"]);
    assert_eq!(codes(&env.errors("orders.zip")), vec!["bad_archive"]);
}

/// `validate` on wrapped files: what is inside is checked under the original's name, a zip
/// member by member, and a wrapper's fault is the file's rejection (exit 2) with its code.
#[test]
fn validate_checks_what_the_wrappers_hold() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, bytes: &[u8]| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let validate = |p: &std::path::Path| {
        let o =
            std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge")).arg("validate").arg(p).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let g = write("inventory/stock.csv.gz", &gz(b"sku,quantity\nA,1\nB,3.5\n"));
    let (code, out) = validate(&g);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{} (stock.csv):3: quantity: bad_integer", g.display())), "{out}");
    assert!(out.contains("1 accepted, 1 rejected"), "{out}");
    let z = write(
        "inventory/batch.zip",
        &zip_of(&[("a.csv", b"sku,quantity\nA,1\n"), ("b.txt", b"x"), ("c.csv", b"sku,quantity\nC,-2\n")]),
    );
    let (code, out) = validate(&z);
    assert_eq!(code, Some(1), "{out}");
    let sep = stitch_bridge::wrap::archive::SEPARATOR;
    assert!(out.contains(&format!("{}{sep}a.csv: inventory: 1 accepted, 0 rejected", z.display())), "{out}");
    assert!(out.contains(&format!("{}{sep}b.txt: skipped", z.display())), "{out}");
    assert!(out.contains(&format!("{}{sep}c.csv:2: quantity: negative_quantity", z.display())), "{out}");
    let mut cut = gz(b"sku,quantity\nA,1\n");
    cut.truncate(cut.len() - 5);
    let (code, out) = validate(&write("inventory/cut.csv.gz", &cut));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("bad_archive"), "{out}");
    let (code, out) = validate(&write("inventory/secret.csv.pgp", b"-----BEGIN PGP MESSAGE-----\n"));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("pgp_wrong_key") && out.contains("--account"), "no key given, and how to give one: {out}");
}

/// A zip's members share one budget of `max_file_bytes`, and reading a member again (for its
/// error file) does not count twice: three members of about a third of the limit each go
/// through, errors and all.
#[test]
fn members_share_the_budget_and_rereads_do_not_count_twice() {
    let env = Env::with(base_seed(), "max_file_bytes = 1200\n");
    let member = |first: &str| {
        let mut s = format!("sku,quantity\n{first}\n");
        for i in 0.. {
            if s.len() >= 330 {
                break;
            }
            s.push_str(&format!("X{i},x\n"));
        }
        s
    };
    let (a, b, c) = (member("RED,21"), member("BLUE,22"), member("GREEN,23"));
    let archive = zip_of(&[("a.csv", a.as_bytes()), ("b.csv", b.as_bytes()), ("c.csv", c.as_bytes())]);
    put_bytes(&env, "inbound/inventory/three.zip", &archive);
    env.inbound_only();
    assert_eq!((stock(&env, "RED"), stock(&env, "BLUE"), stock(&env, "GREEN")), (21, 22, 23));
    let sep = stitch_bridge::wrap::archive::SEPARATOR;
    for m in ["a.csv", "b.csv", "c.csv"] {
        let errors = env.errors(&format!("three.zip{sep}{m}"));
        assert!(!errors.is_empty() && errors.iter().all(|r| r["code"] == "bad_integer"), "{m}: {errors:?}");
    }
    // Past the budget: a fourth member is refused on its own, the others still count.
    let env = Env::with(base_seed(), "max_file_bytes = 1200\n");
    let d = member("KIT,1");
    let archive =
        zip_of(&[("a.csv", a.as_bytes()), ("b.csv", b.as_bytes()), ("c.csv", c.as_bytes()), ("d.csv", d.as_bytes())]);
    put_bytes(&env, "inbound/inventory/four.zip", &archive);
    env.inbound_only();
    assert_eq!(stock(&env, "GREEN"), 23);
    let whole = env.result("four.zip");
    assert_eq!(whole.last().map(|r| r["outcome"].as_str()), Some("rejected"), "{whole:?}");
}
