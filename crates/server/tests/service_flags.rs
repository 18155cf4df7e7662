//! The Windows service flags elsewhere: a clear "only on Windows" error and
//! exit status 2, never a silent start. (On Windows they are exercised
//! under Wine by `scripts/wine-test.sh`.)
#![cfg(not(windows))]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

#[test]
fn service_flags_say_they_are_for_windows_only() {
    for args in [
        &["--install-service"][..],
        &["--install-service", "config.json"],
        &["--uninstall-service"],
        &["--run-service"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("works only on Windows"), "{args:?}: {err}");
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
}
