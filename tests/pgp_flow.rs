//! OpenPGP end to end against the simulator, with keys and messages made by the real GnuPG:
//! files the partner encrypted (and signed) are applied, the wrong key or a missing signature
//! refuses the file, what we send is encrypted to the partner and reads back with `gpg`, and
//! neither the passphrase nor the secret key shows up in any output or file.

mod common;
mod support_pgp;

use common::*;
use support_pgp::{gpg_available, Gpg, Key, PASSPHRASE};

/// A GnuPG home holding our key and the partner's (both Curve25519 unless `rsa`), exported
/// where the config points.
struct Keys {
    gpg: Gpg,
    ours: Key,
    partner: Key,
    config: String,
}

/// `extra` config lines follow the key files. The passphrase comes from `env_var`, set here.
fn keys(env_var: &str, rsa: bool, extra: &str) -> Keys {
    let gpg = Gpg::new();
    let ours = if rsa { gpg.rsa("bridge <bridge@example.com>") } else { gpg.curve25519("bridge <bridge@example.com>") };
    let partner = gpg.curve25519("warehouse <wh@example.com>");
    let sec = gpg.write("bridge.sec.asc", &gpg.export_secret(&ours.fpr, true));
    let public = gpg.write("warehouse.pub.gpg", &gpg.export_public(&partner.fpr, false));
    std::env::set_var(env_var, PASSPHRASE);
    let config = format!(
        "pgp_secret_key_file = {:?}\npgp_passphrase_env = \"{env_var}\"\npgp_partner_public_key_file = {:?}\n{extra}",
        sec.display().to_string(),
        public.display().to_string()
    );
    Keys { gpg, ours, partner, config }
}

/// The partner encrypts `plain` to `to` (armoured or not), signing with its key if `sign`.
fn from_partner(k: &Keys, plain: &[u8], to: &Key, sign: bool, armor: bool) -> Vec<u8> {
    let mut args = vec!["--trust-model", "always", "--recipient", &to.fpr];
    if sign {
        args.extend(["--local-user", &k.partner.fpr, "--sign"]);
    }
    if armor {
        args.push("--armor");
    }
    args.push("--encrypt");
    k.gpg.ok(&args, plain)
}

#[test]
fn files_the_partner_encrypted_and_signed_are_applied() {
    if !gpg_available() {
        return;
    }
    for (rsa, armor) in [(false, true), (true, false)] {
        let k = keys("SB_PGP_FLOW_APPLIED", rsa, "pgp_require_signature = true\n");
        let env = Env::with(base_seed(), &k.config);
        let msg = from_partner(&k, &gz(b"sku,quantity\nRED,11\nBLUE,12\n"), &k.ours, true, armor);
        put_bytes(&env, "inbound/inventory/stock.csv.gz.pgp", &msg);
        let r = env.inbound_only();
        assert!(acct(&r).fatal.is_empty(), "{:?}", acct(&r));
        assert_eq!((stock(&env, "RED"), stock(&env, "BLUE")), (11, 12), "rsa {rsa}, armour {armor}");
        assert_eq!(outcomes(&env.result("stock.csv")).len(), 2);
        assert_eq!(env.archived(), vec!["stock.csv.gz.pgp"], "the original stays encrypted in the archive");
    }
}

#[test]
fn a_file_for_another_key_is_refused_naming_the_key() {
    if !gpg_available() {
        return;
    }
    let k = keys("SB_PGP_FLOW_WRONG", false, "");
    let env = Env::with(base_seed(), &k.config);
    // Encrypted to the partner's own key, not ours.
    let msg = from_partner(&k, b"sku,quantity\nRED,1\n", &k.partner, false, false);
    put_bytes(&env, "inbound/inventory/stock.csv.gpg", &msg);
    env.inbound_only();
    assert_eq!(stock(&env, "RED"), 50);
    assert_eq!(env.list("rejected"), vec!["stock.csv.gpg"]);
    let errors = env.errors("stock.csv");
    assert_eq!(codes(&errors), vec!["pgp_wrong_key"]);
    let named = &k.partner.encrypt_ids[0];
    assert!(errors[0]["message"].to_uppercase().contains(named), "names {named}: {errors:?}");
}

#[test]
fn an_unsigned_file_is_refused_when_a_signature_is_required() {
    if !gpg_available() {
        return;
    }
    let k = keys("SB_PGP_FLOW_UNSIGNED", false, "pgp_require_signature = true\n");
    let env = Env::with(base_seed(), &k.config);
    put_bytes(&env, "inbound/inventory/s.csv.pgp", &from_partner(&k, b"sku,quantity\nRED,2\n", &k.ours, false, false));
    env.inbound_only();
    assert_eq!(stock(&env, "RED"), 50, "nothing of an unsigned file is applied");
    assert_eq!(codes(&env.errors("s.csv")), vec!["pgp_bad_signature"]);
    assert_eq!(env.list("rejected"), vec!["s.csv.pgp"]);
}

#[test]
fn a_cut_off_upload_applies_nothing() {
    if !gpg_available() {
        return;
    }
    let k = keys("SB_PGP_FLOW_CUT", false, "");
    let env = Env::with(base_seed(), &k.config);
    let rows: String = (0..2000).map(|i| format!("SKU{i},1\n")).collect::<String>() + "RED,3\n";
    let mut msg = from_partner(&k, format!("sku,quantity\n{rows}").as_bytes(), &k.ours, false, false);
    msg.truncate(msg.len() - 40);
    put_bytes(&env, "inbound/inventory/cut.csv.pgp", &msg);
    let writes = env.write_requests();
    env.inbound_only();
    assert_eq!(env.write_requests(), writes, "no write for a file whose integrity check failed");
    assert_eq!(codes(&env.errors("cut.csv")), vec!["pgp_corrupt"]);
}

#[test]
fn what_we_send_is_encrypted_to_the_partner_and_signed_by_us() {
    if !gpg_available() {
        return;
    }
    let extra = "pgp_encrypt_outbound = true\npgp_encrypt_results = true\npgp_sign_outbound = true\n";
    let k = keys("SB_PGP_FLOW_OUT", false, extra);
    let env = Env::with(base_seed(), &k.config);
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("PO-PGP-1", "RED", 2, "9.99")]));
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = env.list("outbound/orders");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].ends_with(".csv.pgp"), "{sent:?}");
    let (plain, status, ok) = k.gpg.decrypt(&std::fs::read(env.path(&format!("outbound/orders/{}", sent[0]))).unwrap());
    assert!(ok, "{status}");
    assert!(String::from_utf8_lossy(&plain).contains("PO-PGP-1"));
    assert!(status.contains(&format!("VALIDSIG {}", k.ours.fpr)), "signed by our key: {status}");
    // The result file of the orders file went out encrypted too.
    assert_eq!(env.list("results"), vec!["o.csv.result.csv.pgp"]);
    let (plain, status, ok) = k.gpg.decrypt(&std::fs::read(env.path("results/o.csv.result.csv.pgp")).unwrap());
    assert!(ok, "{status}");
    assert!(String::from_utf8_lossy(&plain).starts_with("\u{feff}line,key,outcome") || plain.starts_with(b"line,key"));
}

#[test]
fn the_passphrase_and_the_secret_key_never_leak() {
    if !gpg_available() {
        return;
    }
    let k = keys("SB_PGP_FLOW_SECRET", false, "pgp_encrypt_results = true\npgp_sign_outbound = true\n");
    let env = Env::with(base_seed(), &k.config);
    put_bytes(&env, "inbound/inventory/a.csv.pgp", &from_partner(&k, b"sku,quantity\nRED,4\n", &k.ours, true, false));
    put_bytes(&env, "inbound/inventory/b.csv.pgp", b"not a message");
    let mut outputs = Vec::new();
    for args in [&["run", "--once"][..], &["status"][..], &["status", "--json"][..]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(&env.config_path)
            .args(args)
            .env("STITCH_BRIDGE_LOG", "trace,pgp=trace")
            .output()
            .unwrap();
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr));
    }
    assert!(outputs[0].contains("a.csv") || env.exists("results/a.csv.result.csv.pgp"), "it ran: {}", outputs[0]);
    // The key's secret part as exported (unarmoured body lines) and the passphrase.
    let exported = String::from_utf8(k.gpg.export_secret(&k.ours.fpr, true)).unwrap();
    let body: Vec<&str> = exported.lines().filter(|l| l.len() > 40 && !l.starts_with("-----")).collect();
    let mut needles = vec![PASSPHRASE.to_string()];
    needles.extend(body.iter().skip(2).take(4).map(|l| l.to_string()));
    for out in &outputs {
        for n in &needles {
            assert!(!out.contains(n.as_str()), "{n:?} leaked into the output:\n{out}");
        }
    }
    let mut stack = vec![env.dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                scanned += 1;
                for n in &needles {
                    assert!(!bytes.windows(n.len()).any(|w| w == n.as_bytes()), "{n:?} found in {}", path.display());
                }
            }
        }
    }
    assert!(scanned >= 3, "the drop, the ledger and the results were scanned ({scanned} files)");
}

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

/// Over OpenSSH's sFTP: an encrypted upload seen half-way is not taken (settle), and one that
/// stays cut off (the uploader died) is refused as corrupt once it stands still, applying
/// nothing; the whole upload, sent again, is applied.
#[test]
fn a_truncated_encrypted_upload_over_sftp_settles_and_is_refused_whole() {
    use std::time::{Duration, SystemTime};
    use stitch_bridge::drop::sftp::SftpAuth;
    use stitch_bridge::engine::{run_cycle, Parts};
    if !gpg_available() {
        return;
    }
    let Some(srv) = support::TestServer::sshd() else { return };
    let k = keys("SB_PGP_FLOW_SFTP", false, "");
    let dir = tempfile::tempdir().unwrap();
    let sim = bridge::sim();
    let cfg = srv.config();
    let SftpAuth::Key { path, .. } = &cfg.auth else { panic!("key auth") };
    let drop = format!("sftp://{}@127.0.0.1:{}{}", cfg.user, cfg.port, cfg.root);
    let extra = format!(
        "settle_seconds = 1\nsftp_key_file = \"{}\"\nknown_hosts = \"{}\"\n{}",
        path.display(),
        cfg.known_hosts.display(),
        k.config
    );
    let config = bridge::load(&bridge::write_config(dir.path(), &drop, &sim.base_url(), &extra));
    let inventory = bridge::INVENTORY.as_bytes();
    let msg = from_partner(&k, inventory, &k.ours, false, false);
    let file = srv.local_root().join("inbound/inventory/stock.csv.pgp");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // A future mtime: only the bridge's own observations say when the file stood still.
    let future = SystemTime::now() + Duration::from_secs(3600);
    let write = |bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(future).unwrap();
    };
    let inbound = Parts { inbound: true, download: false };
    write(&msg[..msg.len() / 2]);
    let r = run_cycle(&config, &[], inbound);
    assert!(r.accounts[0].files.is_empty(), "half an upload is not taken: {r:?}");
    let writes = || write_requests(&sim.counters());
    let before = writes();
    let mut done = None;
    assert!(bridge::wait_for(Duration::from_secs(20), || {
        let r = run_cycle(&config, &[], inbound);
        done = r.accounts[0].files.first().cloned();
        done.is_some()
    }));
    let f = done.unwrap();
    assert_eq!(f.state, "rejected", "{f:?}");
    assert_eq!(writes(), before, "nothing of a cut-off file is applied");
    let errors = read_csv(&srv.local_root().join("errors/stock.csv.errors.csv"));
    assert_eq!(codes(&errors), vec!["pgp_corrupt"]);
    // The whole upload, sent again under the same name, goes through.
    write(&msg);
    assert!(bridge::wait_for(Duration::from_secs(20), || {
        let r = run_cycle(&config, &[], inbound);
        r.accounts[0].files.first().is_some_and(|f| f.state == "archived")
    }));
}

/// Keys are checked when the configuration is loaded: each problem names the key and its file,
/// never the passphrase.
#[test]
fn unusable_keys_are_configuration_errors_naming_the_file() {
    if !gpg_available() {
        return;
    }
    let k = keys("SB_PGP_FLOW_CONFIG", false, "");
    let sec = k.gpg.home().join("bridge.sec.asc");
    let public = k.gpg.home().join("warehouse.pub.gpg");
    let dir = tempfile::tempdir().unwrap();
    let load = |extra: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, config_text("http://127.0.0.1:9", extra)).unwrap();
        stitch_bridge::config::Config::load(&p).map(|_| ()).map_err(|e| e.to_string())
    };
    std::env::set_var("SB_PGP_FLOW_CONFIG_WRONG", "not the passphrase at all");
    let wrong = load(&format!(
        "pgp_secret_key_file = {:?}\npgp_passphrase_env = \"SB_PGP_FLOW_CONFIG_WRONG\"\n",
        sec.display().to_string()
    ))
    .unwrap_err();
    assert!(
        wrong.contains("pgp_secret_key_file") && wrong.contains("bridge.sec.asc") && wrong.contains("passphrase"),
        "{wrong}"
    );
    assert!(!wrong.contains("not the passphrase at all"), "{wrong}");
    let unset = load(&format!(
        "pgp_secret_key_file = {:?}\npgp_passphrase_env = \"SB_PGP_FLOW_NOT_SET\"\n",
        sec.display().to_string()
    ))
    .unwrap_err();
    assert!(unset.contains("SB_PGP_FLOW_NOT_SET"), "{unset}");
    let no_partner = load("pgp_encrypt_outbound = true\n").unwrap_err();
    assert!(no_partner.contains("pgp_partner_public_key_file"), "{no_partner}");
    let sign_only = load(&format!(
        "pgp_secret_key_file = {:?}\npgp_passphrase_env = \"SB_PGP_FLOW_CONFIG\"\npgp_sign_outbound = true\n",
        sec.display().to_string()
    ))
    .unwrap_err();
    assert!(sign_only.contains("pgp_encrypt_outbound"), "{sign_only}");
    let typo = load("pgp_encrypt_outbond = true\n").unwrap_err();
    assert!(typo.contains("pgp_encrypt_outbond"), "{typo}");
    // The whole set, right, loads.
    load(&format!(
        "pgp_secret_key_file = {:?}\npgp_passphrase_env = \"SB_PGP_FLOW_CONFIG\"\npgp_partner_public_key_file = {:?}\npgp_encrypt_outbound = true\npgp_sign_outbound = true\n",
        sec.display().to_string(),
        public.display().to_string()
    ))
    .unwrap();
}
