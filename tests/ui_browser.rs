//! The operator console in a real browser: Chromium headless, driven through chromedriver
//! (WebDriver), against a ledger seeded through the simulator. Each page is loaded and checked,
//! Resume, Clear, Reprocess and Upload are pressed, and a screenshot of each page is saved under
//! `target/ui-screenshots/`. Without chromium and chromedriver the test skips with a note,
//! unless `STITCH_BRIDGE_REQUIRE_BROWSER=1` (CI) makes it fail.

#[path = "support_ui/mod.rs"]
mod support_ui;

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support_ui::{World, HOSTILE, UI_LABEL, UI_TOKEN};

fn found(cmd: &str) -> Option<PathBuf> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

/// (chromium, chromedriver), or `None` with a note (a failure under REQUIRE_BROWSER=1).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = found("chromium").or_else(|| found("chromium-browser"));
    let driver = found("chromedriver");
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    let why = format!("chromium: {chromium:?}, chromedriver: {driver:?}");
    if std::env::var("STITCH_BRIDGE_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("the browser tests need chromium and chromedriver ({why}) and STITCH_BRIDGE_REQUIRE_BROWSER=1");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping: chromium or chromedriver is not installed ({why}); set STITCH_BRIDGE_REQUIRE_BROWSER=1 to fail instead"
    );
    None
}

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Wait until the page's text contains `needle` (htmx swaps pages in place).
async fn wait_text(c: &Client, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = c.find(Locator::Css("body")).await.expect("body").text().await.unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "the page never showed {needle:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the ledger or drop shows what a click did.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let Some((chromium, driver_path)) = browser() else { return };
    let w = World::seeded();
    let console = w.console("127.0.0.1:0");
    let driver = Driver::start(&driver_path);
    let profile = tempfile::tempdir().unwrap();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        &format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium.display().to_string(), "args": args }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session");
    let url = |p: &str| console.url(p);

    // Accounts: the three states, the chart, and htmx loaded under the page's CSP.
    c.goto(&url("/")).await.unwrap();
    let text = wait_text(&c, "halty").await;
    for needle in ["acme", "halted", "lost", "needs attention", "drop_missing", "files today"] {
        assert!(text.contains(needle), "accounts page lacks {needle:?}:\n{text}");
    }
    assert_eq!(c.find_all(Locator::Css("svg.chart")).await.unwrap().len(), 3, "a chart per account");
    let htmx = c.execute("return typeof htmx", vec![]).await.unwrap();
    assert_eq!(htmx, serde_json::json!("object"), "the embedded htmx ran");
    let eval = c.execute("return htmx.config.allowEval", vec![]).await.unwrap();
    assert_eq!(eval, serde_json::json!(false), "htmx configured from the page's meta");
    shot(&c, "accounts").await;

    // Files: the hostile name is text, no element made from it.
    c.goto(&url("/files")).await.unwrap();
    let text = wait_text(&c, "stock.csv").await;
    assert!(text.contains(HOSTILE), "{text}");
    assert!(c.find_all(Locator::Css("main img")).await.unwrap().is_empty(), "no <img> from a file name");
    shot(&c, "files").await;
    c.goto(&url("/files?state=errors")).await.unwrap();
    let text = wait_text(&c, HOSTILE).await;
    assert!(!text.contains("stock.csv"), "{text}");
    shot(&c, "files-filtered").await;

    // A file with rejected rows: result rows, error rows with the original cells.
    let bad = w.file(HOSTILE);
    c.goto(&url(&format!("/files/{}", bad.id))).await.unwrap();
    let text = wait_text(&c, "Error rows").await;
    for needle in ["bad_integer", "abc", "BLUE", "Result rows", "original", "errors"] {
        assert!(text.contains(needle), "file page lacks {needle:?}:\n{text}");
    }
    let cells: Vec<String> = {
        let mut v = Vec::new();
        for td in c.find_all(Locator::Css("#errors td.cell")).await.unwrap() {
            v.push(td.text().await.unwrap());
        }
        v
    };
    assert_eq!(cells, ["BLUE", "abc"], "the original cells of the rejected row");
    shot(&c, "file-errors").await;

    c.goto(&url("/orders")).await.unwrap();
    wait_text(&c, "Orders sent").await;
    shot(&c, "orders").await;
    c.goto(&url("/alerts")).await.unwrap();
    let text = wait_text(&c, "Cycles that did not end ok").await;
    assert!(text.contains("halty") && text.contains("unauthorized"), "{text}");
    shot(&c, "alerts").await;
    c.goto(&url("/lookup")).await.unwrap();
    c.find(Locator::Css("input[name=order]")).await.unwrap().send_keys("PO-7").await.unwrap();
    c.find(Locator::Css("form.filters button")).await.unwrap().click().await.unwrap();
    let text = wait_text(&c, "In files").await;
    assert!(text.contains("orders.csv") && text.contains("created"), "{text}");
    shot(&c, "lookup").await;

    // Sign in with the token.
    c.goto(&url("/login")).await.unwrap();
    shot(&c, "login").await;
    c.find(Locator::Css("input[name=token]")).await.unwrap().send_keys(UI_TOKEN).await.unwrap();
    c.find(Locator::Css("form.login button")).await.unwrap().click().await.unwrap();
    wait_text(&c, &format!("signed in as {UI_LABEL}")).await;

    // Resume and Clear.
    c.find(Locator::Css("#account-halty form button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Account resumed").await;
    wait_for("halty resumed", || w.ledger().halted("halty").unwrap().is_none()).await;
    c.find(Locator::Css("#account-lost form button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Needs-attention cleared").await;
    wait_for("lost cleared", || w.ledger().attention("lost").unwrap().is_none()).await;
    let text = wait_text(&c, "Console actions").await;
    assert!(text.contains("clear-attention") && text.contains("resume"), "{text}");
    shot(&c, "accounts-after-actions").await;

    // Reprocess an archived file.
    let stock = w.file("stock.csv");
    c.goto(&url(&format!("/files/{}", stock.id))).await.unwrap();
    wait_text(&c, "Reprocess").await;
    c.find(Locator::XPath("//button[text()='Reprocess']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "queued again as").await;
    let copy = w.drop.join(format!("inbound/inventory/stock~reprocess-{}.csv", stock.id));
    wait_for("the reprocessed copy", || copy.exists()).await;
    shot(&c, "file-reprocessed").await;

    // Upload a corrected error file: the error file with its bad cell fixed.
    let errors = std::fs::read_to_string(w.drop.join(bad.errors_path.as_ref().unwrap())).unwrap();
    let fixed = errors.replace(",abc,", ",9,");
    assert_ne!(fixed, errors, "the bad cell was in the error file: {errors}");
    let upload_dir = tempfile::tempdir().unwrap();
    let local = upload_dir.path().join("stock-fixed.csv");
    std::fs::write(&local, &fixed).unwrap();
    c.goto(&url("/upload")).await.unwrap();
    wait_text(&c, "Upload a file").await;
    shot(&c, "upload").await;
    c.find(Locator::Css("select[name=kind] option[value=inventory]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("input[type=file]")).await.unwrap().send_keys(&local.display().to_string()).await.unwrap();
    c.find(Locator::Css("form.upload button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "written into the inbound folder").await;
    let landed = w.drop.join("inbound/inventory/stock-fixed.csv");
    wait_for("the uploaded file", || landed.exists()).await;
    assert_eq!(std::fs::read_to_string(&landed).unwrap(), fixed);
    shot(&c, "uploaded").await;
    let done: Vec<String> = w.ledger().console_actions(10).unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(done, ["upload", "reprocess", "clear-attention", "resume"]);
    // The next cycle takes the upload as a replay of the hostile file's refused row.
    let _ = support_ui::run_bin(&w.config, &["run", "--once"]);
    let result = std::fs::read_to_string(w.drop.join("results/stock-fixed.csv.result.csv")).unwrap();
    let result = result.trim_start_matches('\u{feff}');
    assert!(result.starts_with("line,key,outcome,remote_id,message,original_file,original_line"), "{result}");
    assert!(result.contains("BLUE,updated,") && result.contains(&format!("inbound/inventory/{HOSTILE},3")), "{result}");

    c.close().await.unwrap();
}
