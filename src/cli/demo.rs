//! `stitch-bridge demo`: the whole loop on this machine, with nothing to set up.
//!
//! Starts the simulator on a free loopback port, makes a local drop, and plays both sides:
//! the warehouse drops inventory and orders, the bridge posts them and sends the released
//! fulfillments out as order files, the "warehouse" answers with a shipments file built from
//! those order files, and the bridge completes the fulfillments in Stitch. A second warehouse
//! speaks X12 (with a Stitch of its own): stock as an 846 and orders as an 850, the bridge's 940s
//! answered with a 997 and a 945. A third sends its stock gzipped, OpenPGP-encrypted to our key
//! and signed, and reads the result file the bridge encrypted back to it.

use crate::config::Config;
use crate::engine::{self, exit, Parts, RunReport};
use crate::sim::{self, Seed, SimOptions};
use std::fs;
use std::path::{Path, PathBuf};

const SEED: &str = include_str!("../../samples/sim-seed.json");
const INVENTORY: &str = include_str!("../../samples/inventory_good.csv");
const INVENTORY_BROKEN: &str = include_str!("../../samples/inventory_broken.csv");
const ORDERS: &str = include_str!("../../samples/orders_good.csv");
const X12_STOCK: &str = include_str!("../../samples/x12/846_good.x12");
const X12_ORDERS: &str = include_str!("../../samples/x12/850_good.x12");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's drop, ledger and config (default: a new temporary folder, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn step(n: u32, text: &str) {
    outln!("\n== {n}. {text}");
}

/// Build the warehouse's answer: ship every line of every order file it received.
fn shipments_for_orders(outbound: &Path) -> std::io::Result<(String, usize)> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "fulfillment_id",
        "order_ref",
        "sku",
        "quantity",
        "shipped_at",
        "carrier",
        "service",
        "tracking_number",
    ])?;
    let mut n = 0;
    let mut names: Vec<_> = fs::read_dir(outbound)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let mut r = csv::Reader::from_path(p)?;
        let h = r.headers()?.clone();
        let col = |name: &str| h.iter().position(|x| x == name);
        let (Some(fi), Some(oi), Some(si), Some(qi)) =
            (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"))
        else {
            continue;
        };
        let mut shipped_any = false;
        for rec in r.records() {
            let rec = rec?;
            let tracking = format!("1ZDEMO{}", &rec[fi]);
            out.write_record([&rec[fi], &rec[oi], &rec[si], &rec[qi], &now, "UPS", "Ground", &tracking])?;
            shipped_any = true;
        }
        n += shipped_any as usize;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), n))
}

/// An interchange from the X12 warehouse to us: one group of `sets` (each its segments without
/// ST/SE), counts and control numbers filled in.
fn from_x12_warehouse(isa13: u32, gs01: &str, st01: &str, sets: &[Vec<String>]) -> String {
    let date = chrono::Utc::now();
    let (d6, d8, t) = (date.format("%y%m%d"), date.format("%Y%m%d"), date.format("%H%M"));
    let mut out = format!(
        "ISA*00*          *00*          *ZZ*{:<15}*ZZ*{:<15}*{d6}*{t}*U*00401*{isa13:09}*0*P*>~\n\
         GS*{gs01}*WAREHOUSE*STITCHBRIDGE*{d8}*{t}*{isa13}*X*004010~\n",
        "WAREHOUSE", "STITCHBRIDGE"
    );
    for (i, body) in sets.iter().enumerate() {
        let st02 = format!("{:04}", i + 1);
        out.push_str(&format!("ST*{st01}*{st02}~\n"));
        for seg in body {
            out.push_str(seg);
            out.push_str("~\n");
        }
        out.push_str(&format!("SE*{}*{st02}~\n", body.len() + 2));
    }
    out.push_str(&format!("GE*{}*{isa13}~\nIEA*1*{isa13:09}~\n", sets.len()));
    out
}

/// The X12 warehouse's answer to the 940s it received: a 997 accepting them, and a 945 shipping
/// every line of each.
fn x12_answers(outbound: &Path) -> std::io::Result<(String, String, usize)> {
    // Each 940 is an interchange of its own: one 997 set per group.
    let mut acks: Vec<Vec<String>> = Vec::new();
    let mut ships: Vec<Vec<String>> = Vec::new();
    let mut names: Vec<_> = fs::read_dir(outbound)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "edi")) {
        let text = fs::read_to_string(p)?;
        let segs: Vec<Vec<&str>> =
            text.split('~').map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| s.split('*').collect()).collect();
        let get = |id: &str, n: usize| segs.iter().find(|s| s[0] == id).and_then(|s| s.get(n)).copied().unwrap_or("");
        acks.push(vec![
            format!("AK1*OW*{}", get("GS", 6)),
            format!("AK2*940*{}", get("ST", 2)),
            "AK5*A".into(),
            "AK9*A*1*1*1".into(),
        ]);
        let mut ship = vec![
            format!("W06*N*{}*{today}*SHIP-{}", get("W05", 2), get("W05", 3)),
            "W27*M*UPSN".to_string(),
            format!("N9*CN*1ZX12{}", get("W05", 3)),
        ];
        for (n, w01) in segs.iter().filter(|s| s[0] == "W01").enumerate() {
            let (qty, sku) = (w01.get(1).copied().unwrap_or("0"), w01.get(5).copied().unwrap_or(""));
            ship.push(format!("LX*{}", n + 1));
            ship.push(format!("W12*CC*{qty}*{qty}*0*EA**SK*{sku}"));
        }
        ships.push(ship);
    }
    let n = ships.len();
    Ok((from_x12_warehouse(21, "FA", "997", &acks), from_x12_warehouse(22, "SW", "945", &ships), n))
}

/// A Curve25519 key pair (EdDSA primary, ECDH encryption subkey, no passphrase) for the demo's
/// encrypted partner: (secret key, public key), armoured.
fn demo_key(uid: &str) -> anyhow::Result<(String, String)> {
    use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
    let mut rng = rand08::thread_rng();
    let subkey = SubkeyParamsBuilder::default()
        .key_type(KeyType::ECDH(pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy))
        .can_encrypt(EncryptionCaps::All)
        .passphrase(None)
        .build()?;
    let key = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(uid.into())
        .passphrase(None)
        .subkey(subkey)
        .build()?
        .generate(&mut rng)?;
    let public = key.to_public_key().to_armored_string(None.into())?;
    Ok((key.to_armored_string(None.into())?, public))
}

/// What the encrypted partner does with its keys: its stock list gzipped, encrypted to us and
/// signed by it; and it reads the result file we encrypted to it.
fn encrypted_stock(dir: &Path) -> anyhow::Result<Vec<u8>> {
    use crate::wrap::pgp::{OurKey, PartnerKey};
    let theirs = OurKey::load(&dir.join("secrets/demo-pgp-warehouse.sec.asc"), None)?;
    let ours = PartnerKey::load(&dir.join("demo-pgp-bridge.pub.asc"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, INVENTORY.as_bytes())?;
    let plain = gz.finish()?;
    let mut out = Vec::new();
    crate::wrap::pgp::encrypt(&mut plain.as_slice(), &mut out, &ours, Some(&theirs))?;
    Ok(out)
}

/// The partner decrypts a file we sent it (checking our signature).
fn partner_reads(dir: &Path, file: &Path) -> anyhow::Result<String> {
    use crate::wrap::pgp::{OurKey, PartnerKey};
    let theirs = OurKey::load(&dir.join("secrets/demo-pgp-warehouse.sec.asc"), None)?;
    let ours = PartnerKey::load(&dir.join("demo-pgp-bridge.pub.asc"))?;
    let mut r = crate::wrap::pgp::decrypt(Box::new(fs::File::open(file)?), &theirs, Some(&ours), true)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut r, &mut text)?;
    Ok(text)
}

fn summarize(report: &RunReport) {
    crate::cli::run::print_report(report);
}

pub fn run(args: &DemoArgs) -> i32 {
    match demo(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            exit::USAGE
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    let dir = match &args.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile::Builder::new().prefix("stitch-bridge-demo-").tempdir()?.keep(),
    };
    let token = format!("demo-{:016x}", rand::random::<u64>());
    let seed: serde_json::Value = serde_json::from_str(SEED)?;
    let sim = sim::start_in_background(SimOptions {
        token: token.clone(),
        seed: Some(Seed::Json(seed)),
        ..Default::default()
    })?;
    outln!("Stitch simulator listening on {}", sim.base_url());
    // The X12 warehouse's Stitch account is another: its open fulfillments are its own.
    let x12_token = format!("demo-x12-{:016x}", rand::random::<u64>());
    let x12_sim = sim::start_in_background(SimOptions {
        token: x12_token.clone(),
        seed: Some(Seed::Json(serde_json::from_str(SEED)?)),
        ..Default::default()
    })?;
    outln!("Stitch simulator of the X12 partner listening on {}", x12_sim.base_url());
    // And the encrypted partner's.
    let pgp_token = format!("demo-pgp-{:016x}", rand::random::<u64>());
    let pgp_sim = sim::start_in_background(SimOptions {
        token: pgp_token.clone(),
        seed: Some(Seed::Json(serde_json::from_str(SEED)?)),
        ..Default::default()
    })?;
    outln!("Stitch simulator of the encrypted partner listening on {}", pgp_sim.base_url());

    let drop = dir.join("drop");
    fs::create_dir_all(dir.join("secrets"))?;
    super::write_private(&dir.join("secrets/demo.token"), token.as_bytes(), 0o600)?;
    super::write_private(&dir.join("secrets/demo-x12.token"), x12_token.as_bytes(), 0o600)?;
    super::write_private(&dir.join("secrets/demo-pgp.token"), pgp_token.as_bytes(), 0o600)?;
    // Both sides' OpenPGP keys: ours, and the one the partner would have made and sent us the
    // public half of.
    let (bridge_sec, bridge_pub) = demo_key("stitch-bridge demo <bridge@example.com>")?;
    let (wh_sec, wh_pub) = demo_key("demo warehouse <warehouse@example.com>")?;
    super::write_private(&dir.join("secrets/demo-pgp-bridge.sec.asc"), bridge_sec.as_bytes(), 0o600)?;
    super::write_private(&dir.join("secrets/demo-pgp-warehouse.sec.asc"), wh_sec.as_bytes(), 0o600)?;
    fs::write(dir.join("demo-pgp-bridge.pub.asc"), bridge_pub)?;
    fs::write(dir.join("demo-pgp-warehouse.pub.asc"), wh_pub)?;
    let config_text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"demo\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/demo.token\"\nsettle_seconds = 0\n\n\
         [[account]]\nname = \"demo-x12\"\ndrop = \"drop-x12\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/demo-x12.token\"\nsettle_seconds = 0\n\n\
         [account.x12]\ninterchange_id = \"STITCHBRIDGE\"\npartner_interchange_id = \"WAREHOUSE\"\norders_as = \"x12\"\n\n\
         [[account]]\nname = \"demo-pgp\"\ndrop = \"drop-pgp\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/demo-pgp.token\"\nsettle_seconds = 0\n\
         pgp_secret_key_file = \"secrets/demo-pgp-bridge.sec.asc\"\npgp_partner_public_key_file = \"demo-pgp-warehouse.pub.asc\"\n\
         pgp_require_signature = true\npgp_encrypt_outbound = true\npgp_encrypt_results = true\npgp_sign_outbound = true\n",
        sim.base_url(),
        x12_sim.base_url(),
        pgp_sim.base_url()
    );
    let pgp_drop = dir.join("drop-pgp");
    fs::create_dir_all(pgp_drop.join("inbound/inventory"))?;
    let x12_drop = dir.join("drop-x12");
    fs::create_dir_all(x12_drop.join("inbound/edi"))?;
    super::write_private(&dir.join("stitch-bridge.toml"), config_text.as_bytes(), 0o640)?;
    let config = Config::load(&dir.join("stitch-bridge.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    for d in ["inbound/inventory", "inbound/orders", "inbound/shipments"] {
        fs::create_dir_all(drop.join(d))?;
    }

    step(1, "The warehouse drops its stock list (and one broken file) and three orders");
    fs::write(drop.join("inbound/inventory/stock_2024-03-15.csv"), INVENTORY)?;
    fs::write(drop.join("inbound/inventory/stock_broken.csv"), INVENTORY_BROKEN)?;
    fs::write(drop.join("inbound/orders/orders_2024-03-15.csv"), ORDERS)?;
    let first = engine::run_cycle(&config, &[], Parts::ALL);
    summarize(&first);

    step(2, "The warehouse ships what it received and drops a shipments file");
    let (shipments, n) = shipments_for_orders(&drop.join("outbound/orders"))?;
    fs::write(drop.join("inbound/shipments/shipments_2024-03-16.csv"), shipments)?;
    outln!("  shipments for {n} fulfillments written to inbound/shipments/shipments_2024-03-16.csv");
    let second = engine::run_cycle(&config, &[], Parts::ALL);
    summarize(&second);

    step(3, "The X12 warehouse sends its stock as an 846 and two orders as an 850");
    fs::write(x12_drop.join("inbound/edi/846_stock.x12"), X12_STOCK)?;
    fs::write(x12_drop.join("inbound/edi/850_orders.x12"), X12_ORDERS)?;
    let x12_first = engine::run_cycle(&config, &["demo-x12".to_string()], Parts::ALL);
    summarize(&x12_first);
    outln!("  997s for its groups in {}", x12_drop.join("outbound/acks").display());
    outln!("  940s for the orders in {}", x12_drop.join("outbound/orders").display());

    step(4, "The X12 warehouse acknowledges the 940s with a 997 and ships them with a 945");
    let (ack, ship, n) = x12_answers(&x12_drop.join("outbound/orders"))?;
    fs::write(x12_drop.join("inbound/edi/997_ack.x12"), ack)?;
    fs::write(x12_drop.join("inbound/edi/945_shipped.x12"), ship)?;
    outln!("  a 997 and a 945 for {n} orders written to inbound/edi/");
    let x12_second = engine::run_cycle(&config, &["demo-x12".to_string()], Parts::ALL);
    summarize(&x12_second);

    step(5, "The encrypted partner sends its stock gzipped, encrypted to our key and signed by it");
    fs::write(pgp_drop.join("inbound/inventory/stock.csv.gz.pgp"), encrypted_stock(&dir)?)?;
    let pgp_first = engine::run_cycle(&config, &["demo-pgp".to_string()], Parts::ALL);
    summarize(&pgp_first);
    let sealed = pgp_drop.join("results/stock.csv.result.csv.pgp");
    let result = partner_reads(&dir, &sealed)?;
    outln!(
        "  the partner decrypts {} (signed by us): {} result rows",
        sealed.display(),
        result.lines().count().saturating_sub(1)
    );

    step(6, "Running the same cycle again changes nothing");
    let third = engine::run_cycle(&config, &[], Parts::ALL);
    let writes: u64 = third.accounts.iter().map(|a| a.write_requests).sum();
    outln!("  write requests in the repeat cycle: {writes}");

    let state = sim.snapshot();
    let complete =
        state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Complete).count();
    let open = state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Open).count();
    outln!("\n== Summary");
    outln!(
        "  Stitch now holds {} products, {} sales orders, {} shipments",
        state.products.len(),
        state.orders.len(),
        state.shipments.len()
    );
    outln!("  fulfillments: {complete} complete, {open} still open");
    let x12_state = x12_sim.snapshot();
    let x12_complete =
        x12_state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Complete).count();
    let x12_open =
        x12_state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Open).count();
    outln!(
        "  X12 partner's Stitch: {} shipments; fulfillments: {x12_complete} complete, {x12_open} still open",
        x12_state.shipments.len()
    );
    outln!("  X12 drop: {}", x12_drop.display());
    outln!("  encrypted partner's drop: {}", pgp_drop.display());
    outln!("  drop:    {}", drop.display());
    outln!("  results: {}", drop.join("results").display());
    outln!("  errors:  {} (open them in a spreadsheet)", drop.join("errors").display());
    outln!("  config:  {} (the simulator stops when the demo ends)", dir.join("stitch-bridge.toml").display());
    let ok = first
        .accounts
        .iter()
        .chain(&second.accounts)
        .chain(&x12_first.accounts)
        .chain(&x12_second.accounts)
        .chain(&pgp_first.accounts)
        .all(|a| a.halted.is_none() && a.pending.is_empty() && a.fatal.is_empty() && a.attention.is_none())
        && complete > 0
        && open == 0
        && x12_complete > 0
        && x12_open == 0
        && writes == 0;
    Ok(if ok { exit::OK } else { exit::PENDING })
}
