//! `ncclient -c` and the piped REPL against an in-process daemon: every
//! control function, the exit statuses, and the error messages.

mod common;

use common::*;
use netcluster::Client;
use netcluster_testkit::TestDaemon;
use serde_json::{json, Value};

const CONFIG: &str = r#"{
  // Channels of the test; control is added by the daemon.
  "channels": {
    "A": { "propagatetochannels": "^B$" },
    "B": { "propagatetochannels": false }
  }
}"#;

/// A library client on `ch`, to be seen by showchannel/showclient.
async fn client(d: &TestDaemon, ch: &str, name: &str) -> Client {
    Client::builder(ch)
        .socket_dir(d.socket_dir())
        .name(name)
        .connect()
        .await
        .expect("connect")
}

fn channel_names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|c| c["channel"].as_str().expect("channel name").to_string())
        .collect()
}

#[test]
fn showconfig_prints_the_active_config() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "showconfig()");
    assert_code(&o, 0);
    let cfg = &json_docs(&o)[0];
    assert_eq!(cfg["channels"]["A"]["propagatetochannels"], json!("^B$"));
    assert_eq!(cfg["channels"]["B"]["propagatetochannels"], json!(false));
    assert!(cfg["channels"]["control"].is_object(), "{cfg}");
    // Pretty-printed, and the parentheses are optional.
    assert!(stdout(&o).contains("\n  \"channels\": {"));
    let bare = run_c(&d, "showconfig");
    assert_code(&bare, 0);
    assert_eq!(json_docs(&bare)[0], *cfg);
}

#[tokio::test(flavor = "multi_thread")]
async fn showchannel_with_and_without_a_name() {
    let d = TestDaemon::start(CONFIG);
    let a = client(&d, "A", "watcher").await;
    let _sub = a.subscribe("log").await.unwrap();

    let all = run_c(&d, "showchannel()");
    assert_code(&all, 0);
    let list = &json_docs(&all)[0];
    assert_eq!(channel_names(list), ["control", "A", "B"]);
    let a_entry = &list[1];
    assert_eq!(a_entry["clients"], json!(1));
    assert_eq!(a_entry["propagatesto"], json!(["B"]));

    let one = run_c(&d, "showchannel('A')");
    assert_code(&one, 0);
    let clients = &json_docs(&one)[0];
    assert_eq!(clients.as_array().map(Vec::len), Some(1), "{clients}");
    assert_eq!(clients[0]["id"], json!(a.client_id()));
    assert_eq!(clients[0]["name"], json!("watcher"));
    assert_eq!(clients[0]["subscriptions"], json!(["log"]));

    let missing = run_c(&d, "showchannel(\"nope\")");
    assert_code(&missing, 1);
    assert!(stderr(&missing).contains("no channel named \"nope\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn showclient_with_a_number_or_a_string_id() {
    let d = TestDaemon::start(CONFIG);
    let b = client(&d, "B", "worker").await;
    let id = b.client_id();
    let origin = format!("{:016x}:{id}", b.node_id());
    for call in [
        format!("showclient(\"B\", {id})"),
        format!("showclient('B', '{id}')"),
        format!("showclient(\"B\", \"{origin}\")"),
    ] {
        let o = run_c(&d, &call);
        assert_code(&o, 0);
        let info = &json_docs(&o)[0];
        assert_eq!(info["id"], json!(id), "{call}: {info}");
        assert_eq!(info["name"], json!("worker"));
        assert_eq!(info["origin"], json!(origin));
        assert_eq!(info["channel"], json!("B"));
    }
    let o = run_c(&d, "showclient('B', 999999)");
    assert_code(&o, 1);
    assert!(stderr(&o).contains("no client 999999"), "{}", stderr(&o));
}

#[test]
fn status_names_this_daemon() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "status()");
    assert_code(&o, 0);
    let st = &json_docs(&o)[0];
    assert_eq!(st["node"], json!(format!("{:016x}", d.node_id())));
    assert_eq!(st["channels"], json!(3));
    assert_eq!(st["socketdir"], json!(d.socket_dir()));
}

#[test]
fn several_calls_in_one_c_run_in_order() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "status; showchannel(); showchannel('B')");
    assert_code(&o, 0);
    let docs = json_docs(&o);
    assert_eq!(docs.len(), 3);
    assert!(docs[0]["node"].is_string());
    assert_eq!(channel_names(&docs[1]), ["control", "A", "B"]);
    assert_eq!(docs[2], json!([]));
}

#[test]
fn reloadconfig_takes_a_path_relative_to_ncclient() {
    let d = TestDaemon::start(CONFIG);
    let work = netcluster_testkit::tempdir();
    std::fs::create_dir(work.path().join("conf")).unwrap();
    // The daemon's socket directory cannot change on reload, so the new
    // file names the test daemon's.
    let cfg = json!({
        "socketdir": d.socket_dir(),
        "channels": { "A": {}, "B": {}, "C": { "propagatetochannels": true } }
    });
    std::fs::write(work.path().join("conf/new.json"), cfg.to_string()).unwrap();

    let o = ncclient(&d)
        .current_dir(work.path())
        .arg("-c")
        .arg("reloadconfig('conf/new.json'); showchannel()")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let docs = json_docs(&o);
    assert_eq!(docs[0]["added"], json!(["C"]), "{}", docs[0]);
    assert_eq!(channel_names(&docs[1]), ["control", "A", "B", "C"]);

    // The seed's spelling does the same.
    let o = ncclient(&d)
        .current_dir(work.path().join("conf"))
        .arg("-c")
        .arg("reloaconfig(\"./new.json\")")
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(json_docs(&o)[0]["added"], json!([]));
}

#[test]
fn reloadconfig_with_a_bad_file_fails_and_keeps_the_old_config() {
    let d = TestDaemon::start(CONFIG);
    let work = netcluster_testkit::tempdir();
    let bad =
        "{\n  \"channels\": {\n    \"A\": {},\n    \"C\": { \"propagatetonett\": true }\n  }\n}\n";
    std::fs::write(work.path().join("bad.json"), bad).unwrap();
    let o = ncclient(&d)
        .current_dir(work.path())
        .arg("-c")
        .arg("reloadconfig(\"bad.json\")")
        .output()
        .unwrap();
    assert_code(&o, 1);
    let err = stderr(&o);
    let abs = work.path().join("bad.json");
    assert!(
        err.contains(&format!("{}:4:12:", abs.display())),
        "no file:line:column in {err}"
    );
    // A file read by the daemon for a client is never quoted, not even the
    // key's name; the position and the suggestion say where and what.
    assert!(
        err.contains("channels.<channel>.<key>: unknown key"),
        "{err}"
    );
    assert!(!err.contains("propagatetonett"), "{err}");
    assert!(err.contains("did you mean \"propagatetonet\""), "{err}");
    assert!(err.starts_with("ncclient: error: "), "{err}");
    assert!(o.stdout.is_empty());

    let after = run_c(&d, "showchannel()");
    assert_code(&after, 0);
    assert_eq!(channel_names(&json_docs(&after)[0]), ["control", "A", "B"]);
}

#[test]
fn unknown_function_is_the_daemons_error_with_status_1() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "showpets()");
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("unknown function \"showpets\"; did you mean showpeers()?"),
        "{err}"
    );
    assert!(err.contains("showchannel(), showclient()"), "{err}");
    let o = run_c(&d, "showchanel('A')");
    assert!(
        stderr(&o).contains("did you mean showchannel()?"),
        "{}",
        stderr(&o)
    );
    // A long name is not echoed whole.
    let long = "f".repeat(1000);
    let o = run_c(&d, &format!("{long}()"));
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.len() < 500 && err.contains("(1000 bytes)"), "{err}");
    // The first failure stops the rest of the calls.
    let o = run_c(&d, "nope(); status()");
    assert_code(&o, 1);
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
}

#[test]
fn bad_syntax_is_status_2_with_the_column_and_runs_nothing() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "status(); showchannel(A)");
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("parse error at column 23"), "{err}");
    assert!(err.contains("strings need quotes"), "{err}");
    assert!(o.stdout.is_empty(), "status() ran: {}", stdout(&o));

    let o = run_c(&d, "reloadconfig(\"C:\\dir\")");
    assert_code(&o, 2);
    assert!(stderr(&o).contains("write \\\\ for a literal backslash"));
}

#[test]
fn piped_repl_runs_every_line_and_goes_on_after_errors() {
    let d = TestDaemon::start(CONFIG);
    let input = "status()\nshowchannel(\"A\")\n\nnope()\nshowchannel(\nshowchannel ; showconfig\nexit()\nstatus()\n";
    let o = run_with_stdin(ncclient(&d), input);
    let docs = json_docs(&o);
    let err = stderr(&o);
    // status, showchannel("A"), showchannel, showconfig; nothing after exit().
    assert_eq!(docs.len(), 4, "{}\n{err}", stdout(&o));
    assert!(docs[0]["node"].is_string());
    assert_eq!(docs[1], json!([]));
    assert_eq!(channel_names(&docs[2]), ["control", "A", "B"]);
    assert!(docs[3]["channels"]["A"].is_object());
    assert!(err.contains("error: unknown function \"nope\""), "{err}");
    assert!(err.contains("error: parse error at column 13"), "{err}");
    assert!(!stdout(&o).contains("nc> "), "no prompt when piped");
    // The worst status of the lines.
    assert_code(&o, 2);

    let ok = run_with_stdin(ncclient(&d), "help()\nstatus\n");
    assert_code(&ok, 0);
    assert!(stdout(&ok).contains("showclient(\"A\", 3)"));
}

#[test]
fn a_missing_channel_or_daemon_is_status_2_naming_the_socket() {
    let d = TestDaemon::start(CONFIG);
    let o = ncclient(&d).args(["listen", "nochannel"]).output().unwrap();
    assert_code(&o, 2);
    let path = d.socket_dir().join("netcluster-nochannel");
    let err = stderr(&o);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.starts_with("ncclient: error: "), "{err}");

    // No daemon at all: the REPL and -c say which control socket they tried.
    let empty = netcluster_testkit::tempdir();
    let control = empty.path().join("netcluster-control");
    for o in [
        run_with_stdin(ncclient_in(empty.path()), "status()\n"),
        ncclient_in(empty.path())
            .args(["-c", "status()"])
            .output()
            .unwrap(),
    ] {
        assert_code(&o, 2);
        assert!(
            stderr(&o).contains(&control.display().to_string()),
            "{}",
            stderr(&o)
        );
    }
    // help() needs no daemon.
    let o = ncclient_in(empty.path())
        .args(["-c", "help"])
        .output()
        .unwrap();
    assert_code(&o, 0);
}

#[test]
fn help_documents_the_commands_with_examples() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncclient"))
        .arg("--help")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let h = stdout(&o);
    for needle in [
        "--socket-dir",
        "-c, --command",
        "emit",
        "listen",
        "reloadconfig(\"path\")",
        "showclient(\"A\", 3)",
        "Examples:",
        "ncclient listen A log err --count 10",
        "Exit status",
    ] {
        assert!(h.contains(needle), "--help lacks {needle:?}:\n{h}");
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncclient"))
        .args(["listen", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("--timeout <SECS>"));
    assert!(stdout(&o).contains("--count <N>"));
}

/// Usage errors show the REPL's form of a call, and a missing channel
/// names the `--socket-dir` flag.
#[test]
fn errors_speak_ncclient() {
    let d = TestDaemon::start(CONFIG);
    let o = run_c(&d, "showclient('A')");
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("showclient(\"A\", 3)"),
        "{}",
        stderr(&o)
    );

    let empty = netcluster_testkit::tempdir();
    let o = ncclient_in(empty.path())
        .args(["-c", "status()"])
        .output()
        .unwrap();
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("no channel \"control\""), "{err}");
    assert!(err.contains("--socket-dir"), "{err}");
    assert!(!err.contains("socket_dir"), "{err}");

    let long = "e".repeat(1025);
    let o = ncclient(&d)
        .args(["emit", "A", &long, "1"])
        .output()
        .unwrap();
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("event name is 1025 bytes long"), "{err}");
    assert!(err.len() < 400, "the name is not echoed whole: {err}");
}

#[test]
fn help_and_version_name_ncclient() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncclient"))
        .arg("--version")
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        format!("ncclient {}", env!("CARGO_PKG_VERSION"))
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ncclient"))
        .arg("--help")
        .output()
        .unwrap();
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("ncclient: "), "{}", stdout(&o));
}
