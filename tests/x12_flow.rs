//! X12 partners end to end, in process against the simulator: each inbound set applied with its
//! result and error files, one 997 per functional group (parsed back), 940s out for orders and
//! cancellations, the partner's 997s recorded, and the envelope faults refused as documented.

mod common;

use common::*;
use stitch_bridge::engine::exit;
use stitch_bridge::ledger::Ledger;

const X12: &str = "\n[account.x12]\ninterchange_id = \"STITCHBRIDGE\"\npartner_interchange_id = \"WAREHOUSE\"\n";

fn x12_env(extra: &str) -> Env {
    Env::with(base_seed(), &format!("{X12}{extra}"))
}

/// Separators of an interchange we build: element, component, segment, and whether a line
/// break follows each segment.
#[derive(Clone, Copy)]
struct Seps {
    e: char,
    c: char,
    s: char,
    newline: bool,
}

const STD: Seps = Seps { e: '*', c: '>', s: '~', newline: true };

/// An interchange from `sender` to `receiver`: `groups` are (GS01, sets), each set its
/// segments without ST/SE, written with `*`; counts and control numbers are right unless a
/// test breaks them afterwards.
fn interchange(seps: Seps, sender: &str, receiver: &str, isa13: u32, groups: &[(&str, Vec<Vec<String>>)]) -> String {
    let Seps { e, c, s, newline } = seps;
    let nl = if newline { "\n" } else { "" };
    let mut out = format!(
        "ISA{e}00{e}{:10}{e}00{e}{:10}{e}ZZ{e}{sender:<15}{e}ZZ{e}{receiver:<15}{e}240315{e}1200{e}U{e}00401{e}{isa13:09}{e}0{e}P{e}{c}{s}{nl}",
        "", ""
    );
    for (g, (gs01, sets)) in groups.iter().enumerate() {
        let gs06 = g + 1;
        out.push_str(&format!("GS{e}{gs01}{e}{sender}{e}{receiver}{e}20240315{e}1200{e}{gs06}{e}X{e}004010{s}{nl}"));
        for (i, body) in sets.iter().enumerate() {
            let st02 = format!("{:04}", i + 1);
            let st01 = match *gs01 {
                "IB" => "846",
                "AW" => "947",
                "RE" => "944",
                "SW" => "945",
                "PO" => "850",
                "FA" => "997",
                other => other,
            };
            out.push_str(&format!("ST{e}{st01}{e}{st02}{s}{nl}"));
            for seg in body {
                out.push_str(&seg.replace('*', &e.to_string()));
                out.push(s);
                out.push_str(nl);
            }
            out.push_str(&format!("SE{e}{}{e}{st02}{s}{nl}", body.len() + 2));
        }
        out.push_str(&format!("GE{e}{}{e}{gs06}{s}{nl}", sets.len()));
    }
    out.push_str(&format!("IEA{e}{}{e}{isa13:09}{s}{nl}", groups.len()));
    out
}

fn from_warehouse(isa13: u32, groups: &[(&str, Vec<Vec<String>>)]) -> String {
    interchange(STD, "WAREHOUSE", "STITCHBRIDGE", isa13, groups)
}

fn segs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Segments of an X12 file we wrote, each split into elements (separators read from its ISA).
fn parse_x12(text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    assert!(text.starts_with("ISA") && b.len() >= 106, "an interchange: {text:?}");
    let (e, s) = (b[3] as char, b[105] as char);
    text.split(s)
        .map(|seg| seg.trim_matches(|c| c == '\r' || c == '\n'))
        .filter(|seg| !seg.is_empty())
        .map(|seg| seg.split(e).map(str::to_string).collect())
        .collect()
}

fn find<'a>(segments: &'a [Vec<String>], id: &str) -> Vec<&'a Vec<String>> {
    segments.iter().filter(|s| s[0] == id).collect()
}

fn acks(env: &Env) -> Vec<Vec<Vec<String>>> {
    env.list("outbound/acks")
        .iter()
        .map(|n| parse_x12(&std::fs::read_to_string(env.path(&format!("outbound/acks/{n}"))).unwrap()))
        .collect()
}

#[test]
fn an_846_snapshot_is_applied_with_a_result_and_one_997_per_group() {
    let env = x12_env("");
    let text = from_warehouse(
        7,
        &[("IB", vec![segs(&["BIA*00*SI*INV1*20240315", "LIN**SK*RED", "QTY*33*60", "LIN**SK*BLUE", "QTY*33*20"])])],
    );
    env.put("inbound/inventory/stock.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("stock.edi");
    assert_eq!(outcomes(&rows), vec![("RED".into(), "updated".into()), ("BLUE".into(), "unchanged".into())]);
    assert_eq!(env.state().products["RED"].stock, 60);
    assert_eq!(env.archived(), vec!["stock.edi".to_string()]);
    let acks = acks(&env);
    assert_eq!(acks.len(), 1, "one 997 for one group");
    let a = &acks[0];
    assert_eq!(a[0][6].trim(), "STITCHBRIDGE", "sent by us: {:?}", a[0]);
    assert_eq!(a[0][8].trim(), "WAREHOUSE");
    assert_eq!(find(a, "AK1")[0][1..3], ["IB".to_string(), "1".to_string()]);
    assert_eq!(find(a, "AK2")[0][1..3], ["846".to_string(), "0001".to_string()]);
    assert_eq!(find(a, "AK5")[0][1], "A");
    assert_eq!(find(a, "AK9")[0][1..5], ["A", "1", "1", "1"].map(String::from));

    // The same interchange again (same ISA13), under another name: a duplicate, skipped, no
    // second 997, nothing written to Stitch.
    let before = env.write_requests();
    env.put("inbound/inventory/stock-again.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("stock-again.edi");
    assert!(
        rows.iter().all(|r| r["outcome"] == "skipped" && r["message"].contains("duplicate interchange")),
        "{rows:?}"
    );
    assert_eq!(env.write_requests(), before);
    assert_eq!(env.list("outbound/acks").len(), 1, "no second 997 for a duplicate");
}

#[test]
fn a_set_with_a_wrong_count_is_rejected_in_the_997_and_the_groups_other_set_is_applied() {
    let env = x12_env("");
    let good = segs(&["W15*20240315*ADJ1", "W19*AA*5*EA**SK*RED"]);
    let bad = segs(&["W15*20240315*ADJ2", "W19*AA*7*EA**SK*BLUE"]);
    let mut text = from_warehouse(8, &[("AW", vec![good, bad])]);
    // The second set's SE01 says 9 segments; it has 4.
    text = text.replace("SE*4*0002", "SE*9*0002");
    env.put("inbound/edi/adjust.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let st = env.state();
    assert_eq!(st.products["RED"].stock, 55, "the first set applied (+5)");
    assert_eq!(st.products["BLUE"].stock, 20, "the set at fault applied nothing");
    let errs = env.errors("adjust.edi");
    // The set's records are listed as rejected, and the fault itself where it is.
    let count = errs.iter().find(|e| e["column"] == "SE-01").unwrap_or_else(|| panic!("{errs:?}"));
    assert_eq!(count["code"], "x12_count");
    assert!(errs.iter().any(|e| e["segment"].starts_with("ST*947*0002")), "{errs:?}");
    assert!(count["segment"].starts_with("SE*9*0002"), "{count:?}");
    let a = &acks(&env)[0];
    let ak5: Vec<&str> = find(a, "AK5").iter().map(|s| s[1].as_str()).collect();
    assert_eq!(ak5, ["A", "R"]);
    assert_eq!(find(a, "AK9")[0][1], "P", "partially accepted");
}

#[test]
fn other_separators_without_line_breaks_are_read_from_the_isa() {
    let env = x12_env("");
    let seps = Seps { e: '|', c: ':', s: '^', newline: false };
    let text = interchange(
        seps,
        "WAREHOUSE",
        "STITCHBRIDGE",
        9,
        &[("RE", vec![segs(&["W17*F*20240315*R1*PO1", "W07*12*EA**SK*GREEN"])])],
    );
    env.put("inbound/inventory/receipt.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    assert_eq!(env.state().products["GREEN"].stock, 17, "a 944 receipt adds");
    let a = &acks(&env)[0];
    assert_eq!(find(a, "AK1")[0][1], "RE");
}

#[test]
fn an_interchange_from_another_partner_is_rejected_naming_the_ids_found() {
    let env = x12_env("");
    let text = interchange(
        STD,
        "STRANGER",
        "STITCHBRIDGE",
        1,
        &[("IB", vec![segs(&["BIA*00*SI*X*20240315", "LIN**SK*RED", "QTY*33*1"])])],
    );
    // With a password in ISA04 (security information), which no file may echo.
    let text = text.replacen("*00*          *00*          *", "*00*          *01*S3CRETPASS*", 1);
    env.put("inbound/inventory/x.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    assert!(env.exists("rejected/x.edi"));
    let errs = env.errors("x.edi");
    assert_eq!(errs[0]["code"], "x12_partner", "{errs:?}");
    assert!(errs[0]["message"].contains("STRANGER"), "{errs:?}");
    assert!(errs[0]["segment"].starts_with("ISA*") && !errs[0]["segment"].contains("S3CRETPASS"), "{errs:?}");
    assert_eq!(env.state().products["RED"].stock, 50);
    assert!(env.list("outbound/acks").is_empty(), "no 997 to a stranger");
}

#[test]
fn an_850_order_goes_out_as_a_940_and_a_945_ships_it_and_a_997_is_recorded() {
    let env = x12_env("orders_as = \"x12\"\n");
    let po = from_warehouse(
        11,
        &[(
            "PO",
            vec![segs(&[
                "BEG*00*SA*X12-PO-1**20240315",
                "CUR*BY*USD",
                "N1*ST*Alice Example",
                "N3*1 Main St",
                "N4*Springfield*IL*62701*US",
                "PO1*1*2*EA*9.50**SK*RED",
                "PO1*2*1*EA*4.00**SK*GADGET",
            ])],
        )],
    );
    env.put("inbound/orders/po.edi", &po);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("po.edi");
    assert_eq!(outcomes(&rows), vec![("X12-PO-1".into(), "created".into())]);
    let f = env.fulfillment_of("X12-PO-1").expect("the order was released to a fulfillment");
    // The order went out as a 940.
    let files = env.list("outbound/orders");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".edi"), "{files:?}");
    let o = parse_x12(&std::fs::read_to_string(env.path(&format!("outbound/orders/{}", files[0]))).unwrap());
    let w05 = find(&o, "W05")[0];
    assert_eq!((w05[1].as_str(), w05[2].as_str()), ("N", "X12-PO-1"));
    let lines: Vec<(String, String)> = find(&o, "W01").iter().map(|w| (w[5].clone(), w[1].clone())).collect();
    assert!(lines.contains(&("RED".into(), "2".into())) && lines.contains(&("GADGET".into(), "1".into())), "{lines:?}");
    let gs06 = find(&o, "GS")[0][6].clone();
    let st02 = find(&o, "ST")[0][2].clone();

    // The warehouse acknowledges the 940 and ships it.
    let ack = interchange(
        STD,
        "WAREHOUSE",
        "STITCHBRIDGE",
        12,
        &[(
            "FA",
            vec![vec![format!("AK1*OW*{gs06}"), format!("AK2*940*{st02}"), "AK5*A".into(), "AK9*A*1*1*1".into()]],
        )],
    );
    env.put("inbound/edi/ack.edi", &ack);
    let ship = from_warehouse(
        13,
        &[(
            "SW",
            vec![segs(&[
                "W06*N*X12-PO-1*20240316*SHIP1",
                "W27*M*UPSN",
                "N9*CN*1Z999",
                "LX*1",
                "W12*CC*2*2*0*EA**SK*RED",
                "LX*2",
                "W12*CC*1*1*0*EA**SK*GADGET",
            ])],
        )],
    );
    env.put("inbound/shipments/ship.edi", &ship);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("ack.edi");
    assert!(rows.iter().any(|r| r["message"].contains("accepted by the partner")), "{rows:?}");
    let rows = env.result("ship.edi");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "created", "{rows:?}");
    let st = env.state();
    let shipped: Vec<_> = st.shipments.values().filter(|s| s.fulfillment_id == f.id.to_string()).collect();
    assert_eq!(shipped.len(), 1);
    assert_eq!(shipped[0].tracking_number, "1Z999");
    assert!(env.list("outbound/acks").len() >= 2, "997s for the 850 and the 945, none for the 997");
}

#[test]
fn a_940_the_partner_rejects_needs_attention_naming_the_file_until_resumed() {
    let env = x12_env("orders_as = \"x12\"\n");
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("X-REJ", "RED", 1, "1.00")]));
    assert_eq!(env.cycle().exit_code(), exit::OK);
    let files = env.list("outbound/orders");
    let o = parse_x12(&std::fs::read_to_string(env.path(&format!("outbound/orders/{}", files[0]))).unwrap());
    let (gs06, st02) = (find(&o, "GS")[0][6].clone(), find(&o, "ST")[0][2].clone());
    let ack = interchange(
        STD,
        "WAREHOUSE",
        "STITCHBRIDGE",
        21,
        &[(
            "FA",
            vec![vec![format!("AK1*OW*{gs06}"), format!("AK2*940*{st02}"), "AK5*R*5".into(), "AK9*R*1*1*0".into()]],
        )],
    );
    env.put("inbound/edi/ack.edi", &ack);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::ATTENTION, "{r:?}");
    let a = acct(&r).attention.clone().expect("needs attention");
    assert!(a.message.contains(&files[0]), "the file is named: {a:?}");
    let alert = std::fs::read_to_string(env.path("ALERT-acme.txt")).unwrap();
    assert!(alert.contains("x12_rejected") && alert.contains("stitch-bridge resume acme"), "{alert}");
    // Still so on the next run, until the operator dismisses it.
    assert_eq!(env.cycle().exit_code(), exit::ATTENTION);
    let out = env.bin(&["resume", ACCOUNT]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.cycle().exit_code(), exit::OK);
}

#[test]
fn a_940_with_no_997_within_ack_hours_needs_attention() {
    let env = x12_env("orders_as = \"x12\"\nack_hours = 1\n");
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("X-LATE", "RED", 1, "1.00")]));
    assert_eq!(env.cycle().exit_code(), exit::OK, "not late yet");
    // Two hours pass: the ledger's record of the 940 is made older.
    let late = chrono::Utc::now() - chrono::Duration::hours(2);
    let db = rusqlite::Connection::open(env.dir.path().join("state/ledger.sqlite")).unwrap();
    let n = db
        .execute("UPDATE x12_sent SET sent_at = ?1", [late.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)])
        .unwrap();
    assert_eq!(n, 1, "one 940 on record");
    drop(db);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::ATTENTION, "{r:?}");
    assert!(acct(&r).attention.as_ref().unwrap().message.contains("no 997"), "{r:?}");
}

#[test]
fn control_numbers_allocated_before_a_crash_are_never_reused() {
    let env = x12_env("orders_as = \"x12\"\n");
    // A run allocated numbers and died before writing its file: the numbers are gone.
    let ledger = Ledger::open_at(&env.config.ledger).unwrap();
    let burnt = ledger.allocate_x12_controls(ACCOUNT, "ZZ:WAREHOUSE", 1).unwrap();
    drop(ledger);
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("X-CN", "RED", 1, "1.00")]));
    assert_eq!(env.cycle().exit_code(), exit::OK);
    let files = env.list("outbound/orders");
    let o = parse_x12(&std::fs::read_to_string(env.path(&format!("outbound/orders/{}", files[0]))).unwrap());
    let isa13: u32 = o[0][13].parse().unwrap();
    let gs06: u32 = find(&o, "GS")[0][6].parse().unwrap();
    assert!(isa13 > burnt.interchange && gs06 > burnt.group, "{isa13} {gs06} after {burnt:?}");
}

#[test]
fn validate_reads_every_x12_sample_and_applies_the_accounts_partner_ids() {
    let env = x12_env("");
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/x12");
    for set in ["846", "947", "944", "945", "850", "997"] {
        let good = samples.join(format!("{set}_good.x12"));
        let out = env.bin(&["validate", good.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{set} good: {text}");
        assert!(text.contains(&format!("x12 {set}")) && text.contains(" 0 rejected"), "{set}: {text}");
        let broken = samples.join(format!("{set}_broken.x12"));
        let report = env.dir.path().join(format!("{set}.errors.csv"));
        let out = env.bin(&["validate", broken.to_str().unwrap(), "--errors-out", report.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{set} broken: {text}");
        let rows = read_csv(&report);
        assert!(!rows.is_empty() && rows.iter().all(|r| !r["code"].is_empty() && !r["line"].is_empty()), "{rows:?}");
    }
    // With the account, an interchange from someone else is refused naming the ids.
    let stranger = env.dir.path().join("stranger.edi");
    let text = interchange(
        STD,
        "STRANGER",
        "STITCHBRIDGE",
        1,
        &[("IB", vec![segs(&["BIA*00*SI*X*20240315", "LIN**SK*RED", "QTY*33*1"])])],
    );
    std::fs::write(&stranger, text).unwrap();
    let out = env.bin(&["validate", stranger.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "without --account no partner is expected");
    let out = env.bin(&["validate", "--account", ACCOUNT, stranger.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("x12_partner") && text.contains("STRANGER"), "{text}");
}

#[test]
fn a_value_that_is_not_x12_syntax_rejects_its_set_with_ak3_ak4_while_errors_of_meaning_are_accepted() {
    let env = x12_env("");
    // Set 1: a quantity that is not a number (syntax: AK4 code 6). Set 2: a stock below zero
    // (meaning: the 997 accepts the set, the error file names the row).
    let text = from_warehouse(
        31,
        &[(
            "IB",
            vec![
                segs(&["BIA*00*SI*INV1*20240315", "LIN**SK*RED", "QTY*33*lots"]),
                segs(&["BIA*00*SI*INV2*20240315", "LIN**SK*BLUE", "QTY*33*-4"]),
            ],
        )],
    );
    env.put("inbound/inventory/mixed.edi", &text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let st = env.state();
    assert_eq!((st.products["RED"].stock, st.products["BLUE"].stock), (50, 20), "nothing applied");
    let a = &acks(&env)[0];
    let ak3 = find(a, "AK3");
    assert_eq!(ak3.len(), 1, "{a:?}");
    assert_eq!((ak3[0][1].as_str(), ak3[0][2].as_str()), ("QTY", "4"), "QTY is the set's 4th segment");
    let ak4 = find(a, "AK4")[0];
    assert_eq!((ak4[1].as_str(), ak4[3].as_str()), ("2", "6"), "QTY-02, invalid character");
    let ak5: Vec<&str> = find(a, "AK5").iter().map(|s| s[1].as_str()).collect();
    assert_eq!(ak5, ["R", "A"]);
    let errs = env.errors("mixed.edi");
    assert!(errs.iter().any(|e| e["column"] == "QTY-02" && e["code"] == "bad_integer"), "{errs:?}");
    assert!(errs.iter().any(|e| e["code"] == "negative_quantity"), "{errs:?}");
}

#[test]
fn a_cancelled_order_goes_out_as_a_940_with_w05_f() {
    let env = x12_env("orders_as = \"x12\"\n");
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("X-CAN", "RED", 1, "1.00")]));
    assert_eq!(env.cycle().exit_code(), exit::OK);
    assert_eq!(env.list("outbound/orders").len(), 1);
    env.put("inbound/orders/c.csv", &orders_file(&[cancel_row("X-CAN")]));
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let files = env.list("outbound/cancellations");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".edi"), "{files:?}");
    let c = parse_x12(&std::fs::read_to_string(env.path(&format!("outbound/cancellations/{}", files[0]))).unwrap());
    let w05 = find(&c, "W05")[0];
    assert_eq!((w05[1].as_str(), w05[2].as_str()), ("F", "X-CAN"));
    // Its own control numbers: never those of the order's 940.
    let o = parse_x12(
        &std::fs::read_to_string(env.path(&format!("outbound/orders/{}", env.list("outbound/orders")[0]))).unwrap(),
    );
    assert!(c[0][13] > o[0][13], "ISA13 {} after {}", c[0][13], o[0][13]);
}
