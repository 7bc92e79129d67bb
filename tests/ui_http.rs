//! The operator console over plain HTTP, no browser and no JavaScript: what each page shows,
//! escaping of hostile names, and the security of its actions and downloads.

#[path = "support_ui/mod.rs"]
mod support_ui;

use std::collections::BTreeMap;
use std::sync::Mutex;
use support_ui::{run_bin, Console, World, HOSTILE, UI_LABEL, UI_TOKEN};

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    bytes: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
}

/// A browser stand-in: a cookie jar, no redirects followed, no script run.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Http {
    fn new() -> Http {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Http { rt, client, cookies: Mutex::new(BTreeMap::new()) }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let cookie: Vec<String> = self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let req = if cookie.is_empty() { req } else { req.header("cookie", cookie.join("; ")) };
        self.rt.block_on(async {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            for sc in headers.get_all("set-cookie") {
                let sc = sc.to_str().unwrap();
                let (kv, attrs) = sc.split_once(';').unwrap_or((sc, ""));
                let (k, v) = kv.split_once('=').unwrap();
                let mut jar = self.cookies.lock().unwrap();
                if attrs.contains("Max-Age=0") {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_string(), v.to_string());
                }
            }
            let bytes = r.bytes().await.unwrap().to_vec();
            Resp { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), bytes }
        })
    }

    fn get(&self, url: &str) -> Resp {
        self.send(self.client.get(url))
    }

    fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = self.client.get(url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r)
    }

    fn post(&self, url: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let mut r = self.client.post(url).form(fields);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r)
    }

    /// The CSRF value in a page's forms.
    fn csrf(&self, url: &str) -> String {
        let page = self.get(url);
        csrf_in(&page.body).unwrap_or_else(|| panic!("no csrf field in {url}: {}", page.body))
    }

    fn sign_in(&self, c: &Console) {
        self.sign_in_at(&c.base);
    }

    fn sign_in_at(&self, base: &str) {
        let csrf = self.csrf(&format!("{base}/login"));
        let r = self.post(&format!("{base}/login"), &[("csrf", &csrf), ("token", UI_TOKEN), ("next", "/")], &[]);
        assert_eq!(r.status, 303, "{}", r.body);
    }
}

fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

const ESCAPED: &str = "&lt;img src=x onerror=alert(1)&gt;.csv";

#[test]
fn pages_show_the_ledger_as_text_without_javascript() {
    let w = World::seeded();
    let c = w.console("127.0.0.1:0");
    let http = Http::new();

    let home = http.get(&c.url("/"));
    assert_eq!(home.status, 200);
    assert!(home.header("content-security-policy").contains("script-src 'self'"), "{:?}", home.headers);
    for needle in ["acme", "halty", "halted", "lost", "needs attention", "drop_missing", "files today", "<svg"] {
        assert!(home.body.contains(needle), "accounts page lacks {needle:?}:\n{}", home.body);
    }
    // Every page reads without script: plain links, GET forms, no content loaded later.
    assert!(home.body.contains("<a href=\"/files\">"));

    let files = http.get(&c.url("/files"));
    assert_eq!(files.status, 200);
    assert!(files.body.contains(ESCAPED), "the hostile name is shown escaped:\n{}", files.body);
    assert!(!files.body.contains("<img"), "no markup from a file name:\n{}", files.body);
    assert!(files.body.contains("stock.csv") && files.body.contains("orders.csv"));

    let f = w.file(HOSTILE);
    let page = http.get(&c.url(&format!("/files/{}", f.id)));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(ESCAPED) && !page.body.contains("<img"), "{}", page.body);
    // The error rows with their original cells, read from the error file on the drop.
    for needle in ["bad_integer", "abc", "BLUE", "quantity", "<th class=\"cell\">sku</th>"] {
        assert!(page.body.contains(needle), "file page lacks {needle:?}:\n{}", page.body);
    }
    assert!(page.body.contains(&format!("/files/{}/errors", f.id)));

    // Filters: by account, state, kind and name; pages of results.
    let only = http.get(&c.url("/files?account=acme&kind=orders"));
    assert!(only.body.contains("orders.csv") && !only.body.contains("stock.csv"), "{}", only.body);
    let errs = http.get(&c.url("/files?state=errors"));
    assert!(errs.body.contains(ESCAPED) && !errs.body.contains("stock.csv"), "{}", errs.body);
    let named = http.get(&c.url("/files?q=STOCK"));
    assert!(named.body.contains("stock.csv") && !named.body.contains("orders.csv"), "{}", named.body);
    let none = http.get(&c.url("/files?to=2000-01-01"));
    assert!(none.body.contains("No files match."), "{}", none.body);

    let orders = http.get(&c.url("/orders"));
    assert_eq!(orders.status, 200);
    let alerts = http.get(&c.url("/alerts"));
    assert!(alerts.body.contains("halty") && alerts.body.contains("unauthorized"), "{}", alerts.body);
    // The alert history: the halt alert as the hooks got it, recorded when it was raised.
    let raised = alerts.body.split("id=\"raised\"").nth(1).unwrap_or_else(|| panic!("{}", alerts.body));
    assert!(raised.contains("halted") && raised.contains("stitch-bridge HALTED account &quot;halty&quot;"), "{raised}");
    let lookup = http.get(&c.url("/lookup?order=PO-7"));
    assert!(lookup.body.contains("orders.csv") && lookup.body.contains("created"), "{}", lookup.body);
    assert!(lookup.body.contains("Ask Stitch"), "Stitch is asked only on request: {}", lookup.body);
    let asked = http.get(&c.url("/lookup?order=PO-7&stitch=1"));
    assert!(asked.body.contains("id=\"at-stitch\"") && asked.body.contains("order PO-7, status"), "{}", asked.body);
    // Stitch itself, asked live: the sales order the file created, and the halted account not asked.
    let in_stitch = asked.body.split("In Stitch now").nth(1).unwrap_or_else(|| panic!("{}", asked.body));
    let order = w
        .sim
        .snapshot()
        .orders
        .values()
        .find(|o| o.po_num == "PO-7")
        .map(|o| o.id.to_string())
        .expect("PO-7 in Stitch");
    assert!(in_stitch.contains(&order), "{in_stitch}");
    assert!(in_stitch.contains("halted: Stitch is not asked"), "{in_stitch}");

    let js = http.get(&c.url("/assets/htmx.min.js"));
    assert_eq!(js.status, 200);
    assert!(js.header("cache-control").contains("max-age=31536000"));
    assert!(js.body.starts_with("/* htmx 2.") && js.body.contains("htmx"), "the vendored htmx with its licence line");
    // A loopback console answers only to loopback names (no DNS rebinding).
    let r = http.get_with(&c.url("/"), &[("host", "evil.example:8760")]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains("halty"));
    assert_eq!(http.get_with(&c.url("/"), &[("host", "localhost:8760")]).status, 200);
    // No secret on any page: the console token, the Stitch token.
    for body in [&home.body, &files.body, &page.body, &alerts.body] {
        assert!(!body.contains(UI_TOKEN) && !body.contains(support_ui::SIM_TOKEN));
    }
}

#[test]
fn actions_need_the_token_a_csrf_value_and_the_same_origin() {
    let w = World::seeded();
    let c = w.console("127.0.0.1:0");
    let http = Http::new();
    let resume = c.url("/accounts/halty/resume");
    let halted = || w.ledger().halted("halty").unwrap().is_some();

    // No token, no CSRF value.
    let r = http.post(&resume, &[], &[]);
    assert!(matches!(r.status, 401 | 403), "{}", r.status);
    // A CSRF value of this session, but no token.
    let csrf = http.csrf(&c.url("/"));
    let r = http.post(&resume, &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    // The token, but no or a wrong CSRF value.
    let r = http.post(&resume, &[("token", UI_TOKEN)], &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http.post(&resume, &[("token", UI_TOKEN), ("csrf", &"0".repeat(64))], &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    // Another session's CSRF value.
    let other = Http::new().csrf(&c.url("/"));
    assert_ne!(other, csrf);
    let r = http.post(&resume, &[("token", UI_TOKEN), ("csrf", &other)], &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    // Token and CSRF value, but from another site.
    let r = http.post(&resume, &[("token", UI_TOKEN), ("csrf", &csrf)], &[("origin", "http://evil.example")]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http.post(&resume, &[("token", UI_TOKEN), ("csrf", &csrf)], &[("sec-fetch-site", "cross-site")]);
    assert_eq!(r.status, 403, "{}", r.body);
    // A wrong token.
    let r = http.post(&resume, &[("token", "guess"), ("csrf", &csrf)], &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(halted(), "nothing changed");
    assert!(w.ledger().console_actions(10).unwrap().is_empty(), "nothing recorded");

    // Signed in: the cookie carries the token; the CSRF value still has to match.
    http.sign_in(&c);
    let r = http.post(&resume, &[], &[]);
    assert_eq!(r.status, 403, "signed in, no CSRF value: {}", r.body);
    let csrf = http.csrf(&c.url("/"));
    assert!(http.get(&c.url("/")).body.contains(&format!("signed in as {UI_LABEL}")));
    let host = c.base.trim_start_matches("http://").to_string();
    let r = http.post(
        &resume,
        &[("csrf", &csrf)],
        &[("origin", &format!("http://{host}")), ("sec-fetch-site", "same-origin")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/?done=resumed");
    assert!(!halted(), "resumed");
    let r = http.post(&c.url("/accounts/lost/clear"), &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(w.ledger().attention("lost").unwrap().is_none(), "cleared");
    let actions = w.ledger().console_actions(10).unwrap();
    let done: Vec<(&str, &str, &str)> =
        actions.iter().map(|a| (a.who.as_str(), a.account.as_str(), a.action.as_str())).collect();
    assert_eq!(done, [(UI_LABEL, "lost", "clear-attention"), (UI_LABEL, "halty", "resume")]);
    assert!(actions.iter().all(|a| !a.at.is_empty()));

    // Signed out, the cookie no longer acts.
    let r = http.post(&c.url("/logout"), &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 303);
    let r = http.post(&resume, &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 401, "{}", r.body);

    // A script may act with the bearer header (and the CSRF value of its session).
    let script = Http::new();
    let csrf = script.csrf(&c.url("/login"));
    let r = script.send(
        script
            .client
            .post(&resume)
            .form(&[("csrf", csrf.as_str())])
            .header("authorization", format!("Bearer {UI_TOKEN}")),
    );
    assert_eq!(r.status, 303, "{}", r.body);
}

#[test]
fn reprocess_and_upload_write_into_inbound_and_never_overwrite() {
    let w = World::seeded();
    let c = w.console("127.0.0.1:0");
    let http = Http::new();
    http.sign_in(&c);
    let csrf = http.csrf(&c.url("/"));
    let f = w.file("stock.csv");
    let archived = std::fs::read(w.drop.join(f.final_path.as_ref().unwrap())).unwrap();
    for n in 0..2 {
        let r = http.post(&c.url(&format!("/files/{}/reprocess", f.id)), &[("csrf", &csrf)], &[]);
        assert_eq!(r.status, 303, "{}", r.body);
        let name =
            if n == 0 { format!("stock~reprocess-{}.csv", f.id) } else { format!("stock~reprocess-{}-1.csv", f.id) };
        let rel = format!("inbound/inventory/{name}");
        assert_eq!(std::fs::read(w.drop.join(&rel)).unwrap(), archived, "{rel}");
        let mark = w.ledger().get_mark(&format!("reprocess:acme:{rel}")).unwrap();
        assert_eq!(mark, Some(f.id.to_string()), "linked to the original");
    }
    let page = http.get(&c.url(&format!("/files/{}?done=reprocessed", f.id)));
    assert!(page.body.contains("queued again as inbound/inventory/stock~reprocess-"), "{}", page.body);

    // Upload: multipart, written under its sanitised name, never over an existing file.
    let upload = |name: &str, body: &str| {
        let boundary = "XbOuNdArY";
        let mut m = String::new();
        for (k, v) in [("csrf", csrf.as_str()), ("account", "acme"), ("kind", "inventory")] {
            m += &format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
        }
        m += &format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/csv\r\n\r\n{body}\r\n--{boundary}--\r\n"
        );
        http.send(
            http.client
                .post(c.url("/upload"))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(m),
        )
    };
    let r = upload("../../fixed.csv", "sku,quantity\nBLUE,7\n");
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(std::fs::read_to_string(w.drop.join("inbound/inventory/fixed.csv")).unwrap(), "sku,quantity\nBLUE,7\n");
    assert!(!w.dir.path().join("fixed.csv").exists());
    let r = upload("fixed.csv", "sku,quantity\nBLUE,8\n");
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(std::fs::read_to_string(w.drop.join("inbound/inventory/fixed.csv")).unwrap(), "sku,quantity\nBLUE,7\n");
    let actions: Vec<String> = w.ledger().console_actions(10).unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["upload", "reprocess", "reprocess"]);
    // A rejected file is not reprocessed; a file the ledger does not know is not found.
    let r = http.post(&c.url("/files/999999/reprocess"), &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn downloads_go_by_ledger_id_only() {
    let w = World::seeded();
    let c = w.console("127.0.0.1:0");
    let http = Http::new();
    let f = w.file(HOSTILE);
    let r = http.get(&c.url(&format!("/files/{}/original", f.id)));
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, std::fs::read(w.drop.join(f.final_path.as_ref().unwrap())).unwrap());
    let cd = r.header("content-disposition");
    assert_eq!(cd, "attachment; filename=\"_img_src_x_onerror_alert_1__.csv\"");
    let r = http.get(&c.url(&format!("/files/{}/errors", f.id)));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("bad_integer"));
    let stock = w.file("stock.csv");
    assert!(stock.errors_path.is_none());
    for path in [
        format!("/files/{}/errors", stock.id),
        "/files/999999/original".to_string(),
        "/files/-1/original".to_string(),
        "/files/abc/original".to_string(),
        format!("/files/{}/..%2F..%2Fstitch-bridge.toml", f.id),
        format!("/files/{}/original?path=../stitch-bridge.toml", f.id),
        "/files/..%2Fsecrets%2Facme.token/original".to_string(),
    ] {
        let r = http.get(&c.url(&path));
        if path.contains("?path=") {
            // The query is ignored: still the file's own original, never the named path.
            assert_eq!(r.status, 200, "{path}");
            assert!(!r.body.contains("[ledger]"), "{path}");
        } else {
            assert_eq!(r.status, 404, "{path}: {}", r.body);
        }
        assert!(!r.body.contains(support_ui::SIM_TOKEN), "{path}");
    }
}

#[test]
fn beyond_loopback_every_page_needs_the_token() {
    let w = World::seeded();
    let mut c = w.console("0.0.0.0:0");
    let warning = c.stderr_with("beyond loopback");
    assert!(warning.is_some_and(|l| l.starts_with("warning:")), "a warning at start");
    let http = Http::new();
    for path in ["/", "/files", &format!("/files/{}", w.file(HOSTILE).id), "/orders", "/alerts", "/lookup?order=PO-7"] {
        let r = http.get(&c.url(path));
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.body.contains("halty") && !r.body.contains("stock.csv"), "{path}: {}", r.body);
    }
    let r = http.get(&c.url(&format!("/files/{}/original", w.file(HOSTILE).id)));
    assert_eq!(r.status, 401);
    assert_eq!(http.get_with(&c.url("/"), &[("authorization", "Bearer wrong")]).status, 401);
    let r = http.get_with(&c.url("/"), &[("authorization", &format!("Bearer {UI_TOKEN}"))]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("halty"));
    assert_eq!(http.get(&c.url("/assets/htmx.min.js")).status, 200, "assets are open");
    http.sign_in(&c);
    assert_eq!(http.get(&c.url("/files")).status, 200, "signed in by cookie");

    // Without a token the console refuses to listen beyond loopback at all.
    let o = run_bin(&w.config_without_token(), &["ui", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("token_env"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn without_a_token_the_console_reads_but_refuses_every_action() {
    let w = World::seeded();
    let c = Console::start(&w.config_without_token(), "127.0.0.1:0");
    let http = Http::new();
    let home = http.get(&c.url("/"));
    assert_eq!(home.status, 200);
    assert!(home.body.contains("halty"));
    let csrf = csrf_in(&home.body).expect("the Resume form is there");
    let r = http.post(&c.url("/accounts/halty/resume"), &[("csrf", &csrf), ("token", UI_TOKEN)], &[]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("[ui] token_env"), "says how to set it: {}", r.body);
    assert!(w.ledger().halted("halty").unwrap().is_some());
    let r = http.post(&c.url("/login"), &[("csrf", &csrf), ("token", UI_TOKEN)], &[]);
    assert_eq!(r.status, 403);
}

#[test]
fn watch_serves_the_console_beside_its_cycles() {
    use std::io::{BufRead, BufReader};
    let w = World::seeded();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(&w.config)
        .args(["watch", "--account", "acme", "--ui-listen", "127.0.0.1:0", "--log-format", "json"])
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env("STITCH_BRIDGE_LOG", "info")
        .env(support_ui::UI_TOKEN_ENV, UI_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .take(200)
        .map_while(Result::ok)
        .find_map(|l| {
            let at = l.find("console on http://")? + "console on ".len();
            Some(l[at..].split(['/', '"']).take(3).collect::<Vec<_>>().join("/"))
        })
        .expect("watch says where the console is");
    // The rest of the log is drained so the watcher never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let http = Http::new();
    let home = http.get(&format!("{base}/"));
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("halty") && home.body.contains("acme"), "{}", home.body);
    // Its actions work as the ui command's do.
    http.sign_in_at(&base);
    let csrf = http.csrf(&format!("{base}/"));
    let r = http.post(&format!("{base}/accounts/halty/resume"), &[("csrf", &csrf)], &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(w.ledger().halted("halty").unwrap().is_none());
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
}
