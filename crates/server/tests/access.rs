//! Access control through real sockets, with a client that really runs as
//! another user: `allowuids` and `allowgids` let in whom they list (by the
//! kernel's peer credentials), refuse everyone else with an error that
//! names the uid and the channel, and always let root in.
//!
//! Running a process as another user needs root. The test re-executes its
//! own binary as uid/gid 65534 with `CHILD_ENV` set, which turns the
//! `child_process_connecting_as_another_user` test into that client. Not
//! root, it says why and passes, unless `NETCLUSTER_REQUIRE_NETNS=1` (CI,
//! which runs as root) makes it fail.
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netcluster::ConnectError;
use netcluster_testkit::{tempdir, TestDaemon};
use serde_json::{json, Value};

/// The user and group the client runs as (`nobody`/`nogroup` on Debian).
const OTHER: u32 = 65534;
/// Set in the environment of the child process: the socket directory.
const CHILD_ENV: &str = "NC_ACCESS_CHILD_SOCKET_DIR";

const CONFIG: &str = r#"{
  // Sockets anyone may open: the lists below are what decides.
  "socketmode": "0666",
  "channels": {
    "open":   {},
    "byuid":  { "allowuids": [65534] },
    "bygid":  { "allowuids": [4242], "allowgids": [65534] },
    "locked": { "allowuids": [4242], "allowgids": [4242] }
  }
}"#;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Not a test on its own: the client that runs as another user (see the
/// module docs). Prints one line per attempt.
#[test]
fn child_process_connecting_as_another_user() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    println!("\nid {uid} {gid}");
    for ch in ["open", "byuid", "bygid", "locked"] {
        let c = netcluster::blocking::Client::builder(ch)
            .with(|b| b.socket_dir(dir).name("other-user"))
            .connect();
        match c {
            Ok(c) => {
                c.emit("hello", &json!({ "uid": uid })).unwrap();
                c.flush().unwrap();
                println!("{ch} ok");
            }
            Err(e @ ConnectError::Refused { .. }) => println!("{ch} refused: {e}"),
            Err(e) => println!("{ch} error: {e}"),
        }
    }
    // A seed-format client is refused in its own format.
    let mut s = UnixStream::connect(dir.join("netcluster-locked")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"{\"event\":\"hello\",\"data\":1}\0").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    println!(
        "locked legacy: {}",
        String::from_utf8_lossy(&reply).trim_end_matches('\0')
    );
}

#[test]
fn allowuids_and_allowgids_admit_whom_they_list_and_refuse_others_by_name() {
    if !is_root() {
        let why = "access control test: running a client as another user needs root";
        if std::env::var("NETCLUSTER_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{why}, and NETCLUSTER_REQUIRE_NETNS=1 requires it");
        }
        eprintln!("{why}; skipped (not root)");
        return;
    }
    let d = TestDaemon::start(CONFIG);
    // The other user must be able to reach the sockets and run this binary.
    let traversable = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(d.socket_dir(), traversable.clone()).unwrap();
    let bindir = tempdir();
    std::fs::set_permissions(bindir.path(), traversable).unwrap();
    let exe = bindir.path().join("access-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();

    // Root listens on the channels the other user may use, and is let in
    // on the locked one too.
    let mut root_clients: Vec<_> = ["open", "byuid", "bygid", "locked"]
        .iter()
        .map(|ch| {
            let c = netcluster::blocking::Client::builder(ch)
                .with(|b| b.socket_dir(d.socket_dir()).name("root"))
                .connect()
                .unwrap_or_else(|e| panic!("root is always allowed, on {ch} too: {e}"));
            let sub = c.subscribe("hello").unwrap();
            (c, sub)
        })
        .collect();

    let out = Command::new(&exe)
        .args([
            "--exact",
            "child_process_connecting_as_another_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, d.socket_dir())
        .current_dir("/")
        .uid(OTHER)
        .gid(OTHER)
        .stdin(Stdio::null())
        .output()
        .expect("run the client as another user");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client as uid {OTHER}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .to_string()
    };
    assert_eq!(line("id "), format!("id {OTHER} {OTHER}"));
    assert_eq!(
        line("open "),
        "open ok",
        "no lists: the socket mode decides"
    );
    assert_eq!(line("byuid "), "byuid ok", "listed uid");
    assert_eq!(line("bygid "), "bygid ok", "listed gid");
    assert_eq!(
        line("locked "),
        format!(
            "locked refused: the server refused the connection to channel \"locked\": \
             access denied: uid {OTHER} (groups [{OTHER}]) is not allowed on channel \"locked\" \
             (allowuids [4242], allowgids [4242])"
        )
    );
    let legacy: Value =
        serde_json::from_str(line("locked legacy: ").trim_start_matches("locked legacy: "))
            .unwrap();
    assert_eq!(legacy["event"], "nc-error");
    assert_eq!(
        legacy["data"]["error"],
        format!(
            "access denied: uid {OTHER} (groups [{OTHER}]) is not allowed on channel \"locked\" \
             (allowuids [4242], allowgids [4242])"
        )
    );

    // What the admitted client emitted arrived; nothing came from the
    // refused one.
    for ((_client, sub), ch) in root_clients
        .iter_mut()
        .zip(["open", "byuid", "bygid", "locked"])
    {
        let m = sub.recv_timeout(Duration::from_millis(if ch == "locked" {
            200
        } else {
            5000
        }));
        match (ch, m) {
            ("locked", None) => {}
            ("locked", Some(m)) => panic!("a refused client's message arrived: {m:?}"),
            (_, Some(m)) => assert_eq!(m.json::<Value>().unwrap(), json!({ "uid": OTHER })),
            (_, None) => panic!("the message of the admitted client on {ch} never came"),
        }
    }
}
