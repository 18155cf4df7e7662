//! The seed's "Receiver" snippet in Rust: connect to channel B, print the
//! first `log` message and disconnect.
//!
//! Run `ncserver` (its built-in config routes A to B), this receiver, then
//! the sender: `cargo run -p netcluster --example receiver`.

use std::sync::mpsc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Create the client and connect it to channel B.
    let netcluster = netcluster::blocking::Client::connect("B")?;
    let (done_tx, done_rx) = mpsc::channel();
    let client = netcluster.clone();
    // Assign a listener for `log`.
    netcluster.on("log", move |msg| {
        let data: serde_json::Value = msg.json().unwrap_or_default();
        println!("A called:{data}");
        // As in the seed: disconnect once the first message arrived.
        let _ = client.disconnect();
        let _ = done_tx.send(());
    })?;
    eprintln!("receiver: listening for `log` on channel B");
    done_rx.recv()?;
    Ok(())
}
