//! Who may change the daemon through the `control` channel, tried with a
//! client that really runs as another user (uid/gid 65534), as
//! `access.rs` does: on a control socket anyone may open, that user gets
//! the read-only functions, and every way of calling `reloadconfig` (a
//! native Request frame, a native `nc-control-reloadconfig` event, a seed
//! JSON packet) answers a permission error naming what is needed and who
//! the caller is; the config stays as it was, so a channel's `allowuids`
//! still keep that user out. Listed in `adminuids` (or, by its group, in
//! `admingids`) the same user may reload. A file given to
//! `reloadconfig(path)` is never opened for a non-admin, and its content
//! never appears in an error, even for an admin.
//!
//! Running a process as another user needs root. The test re-executes its
//! own binary as uid/gid 65534 with `CHILD_DIR_ENV` set, which turns the
//! `child_process_calling_control_as_another_user` test into that client.
//! Not root, it says why and passes, unless `NETCLUSTER_REQUIRE_NETNS=1`
//! (CI, which runs as root) makes it fail.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, Got, Raw};
use netcluster_testkit::tempdir;
use serde_json::{json, Value};

/// The user and group the client runs as (`nobody`/`nogroup` on Debian).
const OTHER: u32 = 65534;
/// Environment of the child: the socket directory.
const CHILD_DIR_ENV: &str = "NC_ADMIN_CHILD_SOCKET_DIR";
/// Environment of the child: the config object it asks to load.
const CHILD_CONFIG_ENV: &str = "NC_ADMIN_CHILD_CONFIG";
/// Environment of the child: the path it asks `reloadconfig` to read.
const CHILD_PATH_ENV: &str = "NC_ADMIN_CHILD_PATH";

/// The daemon's config: sockets anyone may open, and a channel the other
/// user is kept out of.
const CONFIG: &str = r#"{
  "socketmode": "0666",
  "channels": {
    "control": {},
    "locked": { "allowuids": [4242] }
  }
}"#;

/// What the other user asks to load: the same, with the lock removed.
fn unlocking(extra: Value) -> Value {
    let mut v = json!({
        "socketmode": "0666",
        "channels": { "control": {}, "locked": {} }
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn need_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    let why = format!("{what}: running a client as another user needs root");
    if std::env::var("NETCLUSTER_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{why}, and NETCLUSTER_REQUIRE_NETNS=1 requires it");
    }
    eprintln!("{why}; skipped (not root)");
    false
}

/// The answer to a control call, as one line: `ok` or `error: …`.
fn outcome(r: Result<Value, String>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// Sends `event` with `arg` as an ordinary native publish on control and
/// reads the `{event}-response` event the agent sends back.
fn by_event(raw: &mut Raw, event: &str, arg: &Value) -> Result<Value, String> {
    raw.publish(event, arg.to_string().as_bytes());
    let want = format!("{event}-response");
    loop {
        match raw.next() {
            Some(Got::Deliver { event, payload, .. }) if event == want => {
                let body: Value = serde_json::from_slice(&payload).unwrap();
                return match body.get("error").and_then(Value::as_str) {
                    Some(e) => Err(e.to_string()),
                    None => Ok(body),
                };
            }
            Some(_) => {}
            None => panic!("connection closed before {want}"),
        }
    }
}

/// The same as a seed client: one JSON packet, one JSON packet back.
fn by_legacy(dir: &Path, event: &str, arg: &Value) -> Result<Value, String> {
    let mut s = UnixStream::connect(dir.join("netcluster-control")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut p = serde_json::to_vec(&json!({
        "emmiteruuid": "u-1", "channel": "control", "broadcast": false,
        "event": event, "data": arg
    }))
    .unwrap();
    p.push(0);
    s.write_all(&p).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.contains(&0) {
        let n = s.read(&mut chunk).expect("legacy read");
        assert!(n > 0, "closed before the answer to {event}");
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.iter().position(|&b| b == 0).unwrap();
    let r: Value = serde_json::from_slice(&buf[..end]).unwrap();
    assert_eq!(r["event"], format!("{event}-response"), "{r}");
    match r["data"].get("error").and_then(Value::as_str) {
        Some(e) => Err(e.to_string()),
        None => Ok(r["data"].clone()),
    }
}

/// Not a test on its own: the client that runs as another user (see the
/// module docs). Prints one line per attempt.
#[test]
fn child_process_calling_control_as_another_user() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let config: Value = serde_json::from_str(&std::env::var(CHILD_CONFIG_ENV).unwrap()).unwrap();
    let path = std::env::var(CHILD_PATH_ENV).unwrap();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    println!("\nid {uid} {gid}");
    // `channels.control.allowuids` may keep this user off control entirely.
    let control = netcluster::blocking::Client::builder("control")
        .with(|b| b.socket_dir(&dir).name("other-user"))
        .connect();
    match control {
        Ok(_) => println!("control ok"),
        Err(e) => {
            println!("control refused: {e}");
            return;
        }
    }
    let mut ctl = Raw::connect(&dir.join("netcluster-control"));
    ctl.hello("other-user");
    println!(
        "showconfig {}",
        outcome(ctl.request("nc-control-showconfig", &Value::Null))
    );
    println!(
        "status {}",
        outcome(ctl.request("nc-control-status", &Value::Null))
    );
    println!(
        "path {}",
        outcome(ctl.request("nc-control-reloadconfig", &json!(path)))
    );
    println!(
        "seed-spelling {}",
        outcome(ctl.request("nc-control-reloaconfig", &config))
    );
    println!(
        "event {}",
        outcome(by_event(&mut ctl, "nc-control-reloadconfig", &config))
    );
    println!(
        "legacy {}",
        outcome(by_legacy(&dir, "nc-control-reloadconfig", &config))
    );
    println!(
        "request {}",
        outcome(ctl.request("nc-control-reloadconfig", &config))
    );
    let locked = netcluster::blocking::Client::builder("locked")
        .with(|b| b.socket_dir(&dir).name("other-user"))
        .connect();
    match locked {
        Ok(_) => println!("locked ok"),
        Err(e) => println!("locked refused: {e}"),
    }
}

/// The other user's binary and a directory it may read, made by root.
struct Other {
    exe: PathBuf,
    files: tempfile::TempDir,
}

impl Other {
    fn prepare(d: &Daemon) -> Other {
        let traversable = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(d.dir(), traversable.clone()).unwrap();
        let files = tempdir();
        std::fs::set_permissions(files.path(), traversable).unwrap();
        let exe = files.path().join("control-admin-test");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        Other { exe, files }
    }

    /// Runs the child as uid/gid 65534; returns its lines by first word.
    fn run(
        &self,
        d: &Daemon,
        config: &Value,
        path: &Path,
    ) -> std::collections::BTreeMap<String, String> {
        let out = Command::new(&self.exe)
            .args([
                "--exact",
                "child_process_calling_control_as_another_user",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, d.dir())
            .env(CHILD_CONFIG_ENV, config.to_string())
            .env(CHILD_PATH_ENV, path)
            .current_dir("/")
            .uid(OTHER)
            .gid(OTHER)
            .stdin(Stdio::null())
            .output()
            .expect("run the client as another user");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client as uid {OTHER}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: std::collections::BTreeMap<String, String> = stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            lines.get("id").map(String::as_str),
            Some(&*format!("{OTHER} {OTHER}")),
            "{stdout}"
        );
        lines
    }
}

/// A FIFO nobody writes to: a daemon that opened it to read would hang,
/// so an answer proves it was not opened.
fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("never-opened.fifo");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    p
}

#[test]
fn reloadconfig_needs_admin_over_every_protocol_and_adminuids_grant_it() {
    if !need_root("control admin test") {
        return;
    }
    common::bounded(120, "control admin", || {
        let d = Daemon::start(CONFIG);
        let other = Other::prepare(&d);
        let mut root = d.control();
        let before = root.request("nc-control-showconfig", &Value::Null).unwrap();
        assert_eq!(before["channels"]["locked"]["allowuids"], json!([4242]));

        // Not an admin: reads work, every kind of reload is refused.
        let fifo = fifo(other.files.path());
        let got = other.run(&d, &unlocking(json!({})), &fifo);
        let denied = |cmd: &str| {
            format!(
                "error: permission denied: {cmd} needs admin (root, the daemon's user, or \
                 adminuids/admingids); you are uid {OTHER}, groups [{OTHER}]"
            )
        };
        assert_eq!(got["showconfig"], "ok");
        assert_eq!(got["status"], "ok");
        for how in ["request", "event", "legacy", "path"] {
            assert_eq!(got[how], denied("reloadconfig"), "{how}");
        }
        assert_eq!(got["seed-spelling"], denied("reloaconfig"));
        assert!(
            got["locked"].starts_with("refused: ")
                && got["locked"].contains(&format!("access denied: uid {OTHER}")),
            "{got:?}"
        );
        assert_eq!(
            root.request("nc-control-showconfig", &Value::Null).unwrap(),
            before,
            "a refused reload changed nothing"
        );
        let log = d.log();
        let refusals: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("permission denied"))
            .collect();
        assert_eq!(refusals.len(), 5, "each refusal is logged once:\n{log}");

        // Listed in adminuids (root may give that right by a reload).
        root.request(
            "nc-control-reloadconfig",
            &json!({
                "socketmode": "0666", "adminuids": [OTHER],
                "channels": { "control": {}, "locked": { "allowuids": [4242] } }
            }),
        )
        .unwrap();
        let good = other.files.path().join("good.json");
        std::fs::write(&good, unlocking(json!({"adminuids": [OTHER]})).to_string()).unwrap();
        let got = other.run(&d, &unlocking(json!({"adminuids": [OTHER]})), &good);
        for how in ["path", "seed-spelling", "event", "legacy", "request"] {
            assert_eq!(got[how], "ok", "{how} as an admin by uid: {got:?}");
        }
        assert_eq!(got["locked"], "ok", "the admin lifted the lock");
        let after = root.request("nc-control-showconfig", &Value::Null).unwrap();
        assert_eq!(after["adminuids"], json!([OTHER]));
        assert_eq!(after["channels"]["locked"]["allowuids"], json!([]));

        // Listed by group in admingids.
        root.request(
            "nc-control-reloadconfig",
            &json!({
                "socketmode": "0666", "admingids": [OTHER],
                "channels": { "control": {}, "locked": { "allowuids": [4242] } }
            }),
        )
        .unwrap();
        let got = other.run(&d, &unlocking(json!({"admingids": [OTHER]})), &good);
        assert_eq!(got["request"], "ok", "admin by group: {got:?}");
        assert_eq!(got["locked"], "ok");
        let after = root.request("nc-control-showconfig", &Value::Null).unwrap();
        assert_eq!(after["admingids"], json!([OTHER]));
        assert_eq!(after["adminuids"], json!([]));

        // Taken away again by a reload: refused at once.
        let original: Value = serde_json::from_str(CONFIG).unwrap();
        root.request("nc-control-reloadconfig", &original).unwrap();
        let got = other.run(&d, &unlocking(json!({})), &fifo);
        assert_eq!(got["request"], denied("reloadconfig"));
        assert!(got["locked"].starts_with("refused: "), "{got:?}");

        // `channels.control.allowuids` keeps working: off control entirely.
        root.request(
            "nc-control-reloadconfig",
            &json!({
                "socketmode": "0666",
                "channels": { "control": { "allowuids": [4242] }, "locked": {} }
            }),
        )
        .unwrap();
        let got = other.run(&d, &unlocking(json!({})), &fifo);
        assert!(
            got["control"].starts_with("refused: ")
                && got["control"].contains(&format!(
                    "access denied: uid {OTHER} (groups [{OTHER}]) is not allowed on channel \"control\""
                )),
            "{got:?}"
        );
        assert_eq!(got.get("showconfig"), None, "{got:?}");
    });
}

/// Files that are not a config, each with a secret in it, given to
/// `reloadconfig(path)` by root: the error names the file and where it
/// went wrong, never what the file says.
#[test]
fn reloadconfig_of_a_file_never_quotes_its_content() {
    common::bounded(60, "reloadconfig(path) quotes nothing", || {
        let d = Daemon::start(CONFIG);
        let mut root = d.control();
        let before = root.request("nc-control-showconfig", &Value::Null).unwrap();
        let dir = tempdir();
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "shadow",
                b"root:$6$SECRETSALT$SECRETHASH:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
                ":1:1: ",
            ),
            (
                "bad-addr.json",
                br#"{"addr": "SECRET-ADDR"}"#,
                ":1:10: addr: ",
            ),
            ("bad-key.json", br#"{"SECRETKEY": 1}"#, ":1:2: "),
            (
                "bad-regex.json",
                br#"{"channels": {"A": {"propagatetochannels": "(SECRET"}}}"#,
                ":1:44: channels.<channel>.propagatetochannels: ",
            ),
            ("bad-string.json", b"{\"nodename\": \"SECRET\\q\"}", ":1:"),
            ("bad-word.json", b"{\"port\": SECRETWORD}", ":1:10: "),
            ("binary", b"\xff\xfeSECRET\x00\x01", "valid UTF-8"),
        ];
        for (name, content, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            let e = root
                .request("nc-control-reloadconfig", &json!(p))
                .expect_err(name);
            eprintln!("{name}: {e}");
            assert!(
                !e.contains("SECRET"),
                "{name}: the error quotes the file: {e}"
            );
            assert!(
                e.contains(&p.display().to_string()),
                "{name}: names the file: {e}"
            );
            assert!(e.contains(want), "{name}: {want:?} in {e}");
        }
        let missing = dir.path().join("missing.json");
        let e = root
            .request("nc-control-reloadconfig", &json!(missing))
            .unwrap_err();
        assert!(
            e.contains(&format!("cannot read config file {}", missing.display())),
            "{e}"
        );
        assert_eq!(
            root.request("nc-control-showconfig", &Value::Null).unwrap(),
            before
        );
        // reloadconfig() reads the active file again: named by an earlier
        // reloadconfig(path), it is treated the same, even once replaced.
        let active = dir.path().join("active.json");
        std::fs::write(&active, CONFIG).unwrap();
        root.request("nc-control-reloadconfig", &json!(active))
            .unwrap();
        std::fs::write(&active, r#"{"nodename": 7, "SECRET": "SECRET"}"#).unwrap();
        let e = root
            .request("nc-control-reloadconfig", &Value::Null)
            .unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(
            e.contains(":1:14: nodename: expected a string, found a number"),
            "{e}"
        );
        // The full message stays available to whoever may read the file.
        let check = Command::new(common::BIN)
            .arg("--check")
            .arg(dir.path().join("bad-addr.json"))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&check.stderr).contains("SECRET-ADDR")
                || String::from_utf8_lossy(&check.stdout).contains("SECRET-ADDR"),
            "ncserver --check shows the whole error to the file's reader"
        );
    });
}
