//! The README's Rust snippet, run for real by crates/client/tests/examples.rs
//! (which also checks that the README shows exactly the lines between the
//! markers below). Run `ncserver`, then `cargo run -p netcluster --example readme`.

// README begin
use netcluster::{blocking, Client};

// In async code (inside a tokio runtime):
async fn with_async() -> Result<(), Box<dyn std::error::Error>> {
    let a = Client::connect("A").await?;
    let id = a
        .on("log", |msg| {
            println!("{}: {:?}", msg.origin(), msg.json::<String>())
        })
        .await?;
    a.emit("log", "TESTE").await?;
    let mut metrics = a.subscribe("metric").await?; // a Stream; unsubscribes on drop
    a.emit("metric", &42).await?; // own emits reach own listeners (echo)
    println!("metric {:?}", metrics.recv().await.map(|m| m.json::<u32>()));
    a.remove_listener(id);
    Ok(())
}

// In code without async (same API, each call waits; in async code use the
// async Client, or call this from tokio::task::spawn_blocking):
fn without_async() -> Result<(), Box<dyn std::error::Error>> {
    let b = blocking::Client::connect("B")?;
    b.emit("log", &serde_json::json!({"n": 1}))?;
    b.disconnect()?;
    Ok(())
}
// README end

fn main() -> Result<(), Box<dyn std::error::Error>> {
    without_async()?;
    tokio::runtime::Runtime::new()?.block_on(with_async())
}
