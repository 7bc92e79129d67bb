//! Installing and configuring, through the built binary as an operator meets it: `init` then
//! `sim` then `test` with no edits, config value errors with their line and column, warnings for
//! a token file others can read, the generated completions and man pages, and the README's
//! command table and packaging files agreeing with the code.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stitch-bridge");

/// The binary in `dir`, with none of the caller's bridge settings leaking in.
fn bridge(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env_remove("STITCH_TOKEN")
        .env_remove("STITCH_SIM_TOKEN")
        .env_remove("STITCH_BRIDGE_LOG")
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bridge(dir).args(args).output().expect("run stitch-bridge")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `stitch-bridge sim`, killed when dropped.
struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start(dir: &Path, listen: &str) -> Sim {
        let mut child = bridge(dir)
            .args(["sim", "--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        // The first line says where it listens; reading it waits until it does.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("sim said {line:?}")).to_string();
        Sim { child, url }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `export NAME=VALUE` line `init` prints, as (NAME, VALUE).
fn exported(init_stdout: &str) -> (String, String) {
    let line = init_stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export "))
        .unwrap_or_else(|| panic!("init printed no export line:\n{init_stdout}"));
    let assignment = line.split_whitespace().next().unwrap();
    let (k, v) = assignment.split_once('=').unwrap();
    (k.to_string(), v.to_string())
}

/// `[default: X]` of a flag in a command's `--help`.
fn help_default(help: &str, flag: &str) -> String {
    let line = help.lines().skip_while(|l| !l.trim_start().starts_with(flag)).take(4).collect::<Vec<_>>().join(" ");
    let start =
        line.find("[default: ").unwrap_or_else(|| panic!("no default for {flag} in:\n{help}")) + "[default: ".len();
    line[start..].split(']').next().unwrap().to_string()
}

#[test]
fn init_then_sim_then_test_works_with_the_printed_steps() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "127.0.0.1:0");
    let init = run(dir.path(), &["init", "--stitch-url", &sim.url]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init));
    let out = String::from_utf8_lossy(&init.stdout).into_owned();
    // The printed sim command listens where the config points.
    let listen = sim.url.trim_start_matches("http://");
    assert!(out.contains(&format!("stitch-bridge sim --listen {listen}")), "{out}");
    let (var, token) = exported(&out);
    let test = bridge(dir.path()).arg("test").env(&var, &token).output().unwrap();
    assert_eq!(test.status.code(), Some(0), "{}", text(&test));
    assert!(String::from_utf8_lossy(&test.stdout).contains("accepts the token"), "{}", text(&test));
}

#[test]
fn init_defaults_are_the_simulators_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let help = String::from_utf8(run(dir.path(), &["sim", "--help"]).stdout).unwrap();
    let (listen, token) = (help_default(&help, "--listen"), help_default(&help, "--token"));

    let init = run(dir.path(), &["init"]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init));
    let config = std::fs::read_to_string(dir.path().join("stitch-bridge.toml")).unwrap();
    let url = config.lines().find_map(|l| l.strip_prefix("stitch_url = \"")).unwrap().split('"').next().unwrap();
    assert_eq!(url, format!("http://{listen}"), "init's stitch_url vs sim's --listen default");
    let out = String::from_utf8_lossy(&init.stdout).into_owned();
    assert!(out.lines().any(|l| l.trim() == "stitch-bridge sim &"), "the default sim needs no flags:\n{out}");
    let (var, value) = exported(&out);
    assert_eq!(value, token, "the exported token is the one sim accepts by default");
    assert!(config.contains(&format!("token_env = \"{var}\"")), "the config reads the exported variable:\n{config}");
}

#[test]
fn init_with_another_config_path_says_so_in_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let init = run(dir.path(), &["--config", "etc/bridge.toml", "init"]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init));
    assert!(
        String::from_utf8_lossy(&init.stdout).contains("stitch-bridge --config etc/bridge.toml test"),
        "{}",
        text(&init)
    );
}

fn write_config(dir: &Path, account_extra: &str) {
    std::fs::create_dir_all(dir.join("drop")).unwrap();
    let text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"wh\"\ndrop = \"drop\"\n\
         stitch_url = \"http://127.0.0.1:9\"\n{account_extra}"
    );
    std::fs::write(dir.join("stitch-bridge.toml"), text).unwrap();
}

#[test]
fn config_value_errors_name_line_and_column() {
    // (what is appended to the account, the line of the bad value, its column, words the message must have)
    let cases: &[(&str, usize, usize, &[&str])] = &[
        ("token_env = \"T\"\ndelimiter = \"ab\"\n", 9, 13, &["delimiter", "one ASCII character"]),
        ("token_env = \"T\"\ntimezone = \"Mars/Base\"\n", 9, 12, &["timezone", "Mars/Base", "IANA"]),
        ("token_env = \"\"\n", 8, 13, &["token_env", "environment variable"]),
        ("token_env = \"T\"\ntoken_file = \"t\"\n", 9, 14, &["exactly one of token_env or token_file"]),
        ("token_env = \"T\"\ndate_format = \"%Q\"\n", 9, 15, &["date_format"]),
        ("token_env = \"T\"\nconcurrency = 0\n", 9, 15, &["concurrency"]),
        (
            "token_env = \"T\"\n[account.columns]\n\"Qty\" = \"quantity\"\n\"Item\" = \"skew\"\n",
            11,
            10,
            &["\"Item\"", "\"skew\"", "inventory: sku, quantity, name, barcode", "shipments: fulfillment_id"],
        ),
    ];
    for (extra, line, column, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), extra);
        let o = run(dir.path(), &["test"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {}", text(&o));
        assert!(err.contains(&format!("line {line}, column {column}:")), "{extra}: {err}");
        for w in *words {
            assert!(err.contains(w), "{extra}: missing {w:?} in {err}");
        }
    }
}

#[test]
fn the_account_without_a_token_source_is_named_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let o = run(dir.path(), &["test"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(err.contains("line 5, column 8:") && err.contains("set exactly one of token_env or token_file"), "{err}");
}

#[test]
fn a_column_mapped_to_an_alias_means_its_column() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "token_env = \"T\"\n[account.columns]\n\"Stock Level\" = \"qty\"\n");
    let o = run(dir.path(), &["test"]);
    // Loaded: `test` got as far as checking the account.
    assert!(String::from_utf8_lossy(&o.stdout).contains("account wh:"), "{}", text(&o));
}

#[test]
fn an_empty_token_variable_is_told_apart_from_an_unset_one() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "token_env = \"WH_TOKEN\"\n");
    let unset = bridge(dir.path()).arg("test").env_remove("WH_TOKEN").output().unwrap();
    assert!(String::from_utf8_lossy(&unset.stdout).contains("WH_TOKEN, which is not set"), "{}", text(&unset));
    let empty = bridge(dir.path()).arg("test").env("WH_TOKEN", " ").output().unwrap();
    assert!(String::from_utf8_lossy(&empty.stdout).contains("WH_TOKEN, which is set but empty"), "{}", text(&empty));
}

#[test]
fn a_token_file_others_can_read_is_warned_about() {
    for (mode, warned) in [(0o640, true), (0o604, true), (0o644, true), (0o600, false), (0o400, false)] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "token_file = \"secrets/wh.token\"\n");
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        let token = dir.path().join("secrets/wh.token");
        std::fs::write(&token, "t").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::set_permissions(dir.path().join("stitch-bridge.toml"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let o = run(dir.path(), &["test"]);
        let err = String::from_utf8_lossy(&o.stderr);
        let says = err.contains("token file")
            && err.contains("readable by users other than its owner")
            && err.contains("chmod 600");
        assert_eq!(says, warned, "mode {mode:o}: {}", text(&o));
    }
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _stitch__bridge"),
        ("zsh", "#compdef stitch-bridge"),
        ("fish", "complete -c stitch-bridge"),
    ] {
        let o = run(dir.path(), &["completions", shell]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(out.contains(marker) && out.contains("validate") && out.contains("errors-out"), "{shell}: {out}");
    }
    let o = run(dir.path(), &["man"]);
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH stitch-bridge"), "{page}");
    let o = run(dir.path(), &["man", "--dir", "man"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for page in ["stitch-bridge.1", "stitch-bridge-run.1", "stitch-bridge-auth.1", "stitch-bridge-init.1"] {
        let body = std::fs::read_to_string(dir.path().join("man").join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(body.contains(".TH"), "{page}");
    }
    assert!(!dir.path().join("man/stitch-bridge-completions.1").exists(), "hidden commands get no page");
    // Hidden from the help an operator reads; there for the packager.
    let help = String::from_utf8_lossy(&run(dir.path(), &["--help"]).stdout).into_owned();
    assert!(!help.contains("completions") && help.contains("validate"), "{help}");
}

/// Every `--flag` in the README's command table exists on that command, and every option the
/// command requires is in its row (as the flag or its environment variable).
#[test]
fn readme_command_table_matches_the_cli() {
    use clap::CommandFactory;
    let readme = include_str!("../README.md");
    let cli = stitch_bridge::cli::Cli::command();
    let globals: Vec<String> =
        cli.get_arguments().filter(|a| a.is_global_set()).filter_map(|a| a.get_long().map(String::from)).collect();
    let mut rows = 0;
    for row in readme.lines().filter(|l| l.starts_with("| `stitch-bridge ")) {
        let cell = row.split('|').nth(1).unwrap();
        let name = cell.trim().trim_matches('`').split_whitespace().nth(1).unwrap();
        let sub = cli.find_subcommand(name).unwrap_or_else(|| panic!("README names command {name:?}"));
        let longs: Vec<String> = sub.get_arguments().filter_map(|a| a.get_long().map(String::from)).collect();
        for flag in cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).filter(|w| w.starts_with("--")) {
            let flag = &flag[2..];
            assert!(longs.iter().chain(&globals).any(|l| l == flag), "README: `{name}` has no --{flag}");
        }
        for arg in sub.get_arguments().filter(|a| a.is_required_set()) {
            let Some(long) = arg.get_long() else { continue };
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(
                row.contains(&format!("--{long}")) || env.as_ref().is_some_and(|e| row.contains(e.as_str())),
                "README: `{name}` requires --{long} (env {env:?}), its row does not say so:\n{row}"
            );
        }
        rows += 1;
    }
    assert!(rows >= 10, "found {rows} command rows");
}

/// The package's paths agree: the units run the binary where the package puts it, with the
/// config it installs, and that config is valid.
#[test]
fn package_units_and_config_agree() {
    let manifest: toml::Value = toml::from_str(include_str!("../Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_str().unwrap().to_string(), a[1].as_str().unwrap().to_string()))
        .collect();
    let dest = |src: &str| assets.iter().find(|(s, _)| s == src).map(|(_, d)| d.clone()).unwrap();
    let bin = format!("/{}stitch-bridge", dest("target/release/stitch-bridge"));
    let config = format!("/{}", dest("packaging/stitch-bridge.toml"));
    for unit in ["stitch-bridge-run.service", "stitch-bridge-watch.service"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd").join(unit)).unwrap();
        let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
        assert!(exec.starts_with(&format!("{bin} --config {config} ")), "{unit}: {exec}");
        assert!(text.contains("User=stitch-bridge") && text.contains("ProtectSystem=strict"), "{unit}");
        assert!(text.contains("WorkingDirectory=/var/lib/stitch-bridge"), "{unit}");
    }
    let packaged = include_str!("../packaging/stitch-bridge.toml");
    let parsed = stitch_bridge::config::Config::parse(packaged, Path::new("/etc/stitch-bridge")).unwrap();
    assert_eq!(
        parsed.ledger,
        stitch_bridge::ledger::LedgerLocation::Sqlite("/var/lib/stitch-bridge/ledger.sqlite".into())
    );
}
