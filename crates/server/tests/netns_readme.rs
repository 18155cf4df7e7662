//! The README's two-host example config, as printed there, on two hosts
//! (network namespaces on a bridge, without a multicast route: the config
//! names the interface): `--check` passes, and a message emitted on one host
//! reaches a listener on the other. Needs root and iproute2;
//! skipped with a message otherwise, except under NETCLUSTER_REQUIRE_NETNS=1.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use common::lan::*;
use netcluster_testkit::netns::Lan;

const BIN: &str = env!("CARGO_BIN_EXE_ncserver");

/// The README's ```jsonc block that starts with the two-host comment.
fn readme_config() -> String {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```jsonc\n// ncserver config for two hosts")
        .expect("the two-host example in README.md")
        + "```jsonc\n".len();
    let len = readme[start..].find("```").expect("end of the block");
    readme[start..start + len].to_string()
}

#[test]
fn the_readme_two_host_config_works_on_two_hosts() {
    let text = readme_config();
    assert!(text.contains(r#""nodename": "host-a""#), "{text}");
    let Some(mut lan) = Lan::new(2) else { return };
    // As the README says: with `interface` set, no multicast route is needed.
    lan.remove_multicast_route(0);
    lan.remove_multicast_route(1);
    let files = netcluster_testkit::tempdir();
    let key = files.path().join("netcluster.key");
    std::fs::write(&key, format!("{}\n", "5e".repeat(32))).unwrap();
    for i in 0..2 {
        let name = if i == 0 { "host-a" } else { "host-b" };
        let cfg = text
            .replace(
                r#""nodename": "host-a""#,
                &format!(r#""nodename": "{name}""#),
            )
            .replace("\"netcluster.key\"", &format!("{:?}", key));
        let path = files.path().join(format!("{name}.json"));
        std::fs::write(&path, &cfg).unwrap();
        let out = lan.exec(
            i,
            &["timeout", "20", BIN, "--check", path.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "--check on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lan.start_daemon(i, Path::new(BIN), &cfg);
    }
    rt().block_on(async {
        let dirs: Vec<&Path> = lan.hosts.iter().map(|h| h.dir()).collect();
        wait_peers(&dirs, 1).await;
        let p = peers(dirs[0]).await;
        assert_eq!(p["sealed"], true, "{p}");
        assert_eq!(p["peers"][0]["name"], "host-b", "{p}");
        let rx = client(dirs[1], "A").await;
        let mut sub = rx.subscribe("hello").await.unwrap();
        let tx = client(dirs[0], "A").await;
        tx.emit("hello", "hi").await.unwrap();
        let m = next(&mut sub, 10).await.expect("the message on host-b");
        assert_eq!(m.json::<String>().unwrap(), "hi");
        // B also goes to the network, and on to A by the rule there.
        let txb = client(dirs[0], "B").await;
        txb.emit("hello", "via B").await.unwrap();
        let m = next(&mut sub, 10).await.expect("B's message on host-b's A");
        assert_eq!(m.json::<String>().unwrap(), "via B");
    });
}
