//! What an operator sees on the command line: files waiting to settle, `-q`, and the published
//! shape of `status --json`.

#[path = "support/bridge.rs"]
mod bridge;

use bridge::*;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn bin(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env("STITCH_BRIDGE_LOG", "info")
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn both(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// A file written just now (mtime now) under a long settle time: seen, not taken.
fn fresh_file(root: &Path) {
    let p = root.join("inbound/inventory/fresh.csv");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, INVENTORY).unwrap();
}

#[test]
fn a_file_waiting_to_settle_is_listed_with_when_it_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let root = dir.path().join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = write_config(dir.path(), root.to_str().unwrap(), &sim.base_url(), "settle_seconds = 300");
    fresh_file(&root);

    let out = bin(&cfg, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let text = stdout(&out);
    let line =
        text.lines().find(|l| l.contains("inbound/inventory/fresh.csv")).unwrap_or_else(|| panic!("{}", both(&out)));
    assert!(line.contains("waiting") && line.contains("taken in "), "{line}");

    let out = bin(&cfg, &["run", "--once", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", both(&out)));
    let acct = &json["accounts"][0];
    assert!(acct.get("settle_due_ms").is_none(), "absolute epoch-ms in the JSON: {acct}");
    let due = acct["settle_due_seconds"].as_u64().unwrap_or_else(|| panic!("no settle_due_seconds: {acct}"));
    assert!(due > 200 && due <= 300, "{due}");
    let waiting = acct["waiting"].as_array().unwrap_or_else(|| panic!("no waiting list: {acct}"));
    assert_eq!(waiting.len(), 1, "{acct}");
    assert_eq!(waiting[0]["path"], "inbound/inventory/fresh.csv");
    let secs = waiting[0]["settle_due_seconds"].as_u64().unwrap();
    assert!(secs > 200 && secs <= 300, "{secs}");

    let out = bin(&cfg, &["status"]);
    let text = stdout(&out);
    let line =
        text.lines().find(|l| l.contains("inbound/inventory/fresh.csv")).unwrap_or_else(|| panic!("{}", both(&out)));
    assert!(line.contains("taken in "), "{line}");
    let json: Value = serde_json::from_slice(&bin(&cfg, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["waiting"][0]["path"], "inbound/inventory/fresh.csv", "{json}");
}

#[test]
fn quiet_run_prints_nothing_on_stdout_but_errors_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let root = dir.path().join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = write_config(dir.path(), root.to_str().unwrap(), &sim.base_url(), "settle_seconds = 0");
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    let out = bin(&cfg, &["-q", "run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    assert!(root.join("results/stock.csv.result.csv").exists(), "{}", both(&out));
    assert_eq!(stdout(&out), "", "{}", both(&out));
    // Without -q the same run prints its summary.
    let out = bin(&cfg, &["run", "--once"]);
    assert!(stdout(&out).contains("account wh:"), "{}", both(&out));

    // A refused token halts the account: quiet still says so, on stderr.
    fs::write(dir.path().join("secrets/token"), "wrong-token").unwrap();
    drop_file(&root, "inbound/inventory/more.csv", INVENTORY.replace(",120,", ",121,").as_bytes());
    let out = bin(&cfg, &["-q", "run", "--once"]);
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert_eq!(stdout(&out), "", "{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HALTED"), "{}", both(&out));
}

/// Checks `value` against the parts of JSON Schema the published schema uses: `type` (one or a
/// list), `required`, `properties`, `items`. Returns every mismatch with its JSON path.
fn check(schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            errs.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let (Some(req), Some(obj)) = (schema.get("required").and_then(Value::as_array), value.as_object()) {
        for k in req.iter().filter_map(Value::as_str) {
            if !obj.contains_key(k) {
                errs.push(format!("{at}: missing {k}"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), value.as_object()) {
        for (k, s) in props {
            if let Some(v) = obj.get(k) {
                check(s, v, &format!("{at}.{k}"), errs);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(items, v, &format!("{at}[{i}]"), errs);
        }
    }
}

#[test]
fn status_json_has_named_fields_and_matches_the_published_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let root = dir.path().join("drop");
    fs::create_dir_all(&root).unwrap();
    let cfg = write_config(dir.path(), root.to_str().unwrap(), &sim.base_url(), "settle_seconds = 300");
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    fresh_file(&root);
    let out = bin(&cfg, &["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let out = bin(&cfg, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = &json[0]["last_cycle"];
    assert!(last.is_object(), "last_cycle is not an object: {last}");
    assert_eq!(last["outcome"], "ok", "{last}");
    assert!(last["at"].is_string() && last["summary"].is_string(), "{last}");
    assert!(json[0]["recent_files"].as_array().is_some_and(|a| !a.is_empty()), "{json}");
    assert!(json[0]["waiting"].as_array().is_some_and(|a| a.len() == 1), "{json}");

    let schema: Value = serde_json::from_str(
        &fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/status.schema.json")).unwrap(),
    )
    .unwrap();
    let mut errs = Vec::new();
    check(&schema, &json, "$", &mut errs);
    assert!(errs.is_empty(), "{errs:#?}\n{json:#}");
    // The checker itself bites: a bare tuple where the schema wants an object is caught.
    let mut bad = json.clone();
    bad[0]["last_cycle"] = serde_json::json!(["2026-01-01", "ok", "x"]);
    let mut errs = Vec::new();
    check(&schema, &bad, "$", &mut errs);
    assert!(!errs.is_empty());
    // Every property the schema names for an account is required: nothing optional hides.
    let item = &schema["items"];
    let props: Vec<&String> = item["properties"].as_object().unwrap().keys().collect();
    let req: Vec<&str> = item["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(props.iter().all(|p| req.contains(&p.as_str())), "{props:?} vs {req:?}");
}
