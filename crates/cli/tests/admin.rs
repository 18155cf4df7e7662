//! `ncclient -c` run by a user who may connect to `control` but is not an
//! admin (uid/gid 65534, on a socket anyone may open): the read-only
//! functions work, `reloadconfig()` prints the daemon's permission error
//! and exits with the daemon-error status. Needs root to run a process as
//! another user; not root, it says why and passes, unless
//! `NETCLUSTER_REQUIRE_NETNS=1` (CI, which runs as root) makes it fail.
#![cfg(unix)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;
use netcluster_testkit::{tempdir, TestDaemon};

const OTHER: u32 = 65534;

#[test]
fn ncclient_reloadconfig_as_a_non_admin_prints_permission_denied_and_fails() {
    // The owner of /proc/self is this process's effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        let why = "ncclient admin test: running ncclient as another user needs root";
        if std::env::var("NETCLUSTER_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("{why}, and NETCLUSTER_REQUIRE_NETNS=1 requires it");
        }
        eprintln!("{why}; skipped (not root)");
        return;
    }
    let d = TestDaemon::start(r#"{ "socketmode": "0666", "channels": { "A": {} } }"#);
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(d.socket_dir(), open.clone()).unwrap();
    let bin = tempdir();
    std::fs::set_permissions(bin.path(), open).unwrap();
    let exe = bin.path().join("ncclient");
    std::fs::copy(env!("CARGO_BIN_EXE_ncclient"), &exe).unwrap();
    let run = |calls: &str| {
        Command::new(&exe)
            .arg("--socket-dir")
            .arg(d.socket_dir())
            .arg("-c")
            .arg(calls)
            .env_remove("NETCLUSTER_SOCKET_DIR")
            .current_dir("/")
            .uid(OTHER)
            .gid(OTHER)
            .stdin(Stdio::null())
            .output()
            .expect("run ncclient as another user")
    };
    let shown = run("showconfig()");
    assert_code(&shown, 0);
    assert!(json_docs(&shown)[0]["channels"]["A"].is_object());

    let refused = run("reloadconfig()");
    assert_code(&refused, 1);
    let err = stderr(&refused);
    assert!(
        err.contains(&format!(
            "permission denied: reloadconfig needs admin (root, the daemon's user, or \
             adminuids/admingids); you are uid {OTHER}, groups [{OTHER}]"
        )),
        "{err}"
    );
    let with_object = run(r#"reloadconfig({"channels": {}})"#);
    assert_code(&with_object, 1);
    assert!(stderr(&with_object).contains("permission denied"));
}
