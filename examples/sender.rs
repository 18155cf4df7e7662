//! The seed's "Sender" snippet in Rust: connect to channel A and emit the
//! event `log` with the data "TESTE" once a second.
//!
//! Run `ncserver` (its built-in config routes A to B), then
//! `cargo run -p netcluster --example sender` (add a number to stop after
//! that many messages).

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: Option<u64> = std::env::args().nth(1).map(|n| n.parse()).transpose()?;
    // Create the client and bind it to the local server's channel A.
    let netcluster = netcluster::blocking::Client::connect("A")?;
    let mut sent = 0;
    loop {
        // Emit the event.
        netcluster.emit("log", "TESTE")?;
        sent += 1;
        if Some(sent) == count {
            break;
        }
        std::thread::sleep(Duration::from_millis(if count.is_some() {
            100
        } else {
            1000
        }));
    }
    netcluster.disconnect()?;
    Ok(())
}
