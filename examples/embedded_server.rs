//! The seed's "Local Server (in case you want to embed)" snippet in Rust:
//! read a config file (the path given as the first argument, or the
//! built-in default: channels control, A and B, A and B propagating to each
//! other), start the daemon inside this process, and serve until Ctrl-C
//! (or SIGTERM).
//!
//! `cargo run -p netcluster --example embedded_server -- config.json`, then
//! run the receiver and the sender examples against it.

use std::path::Path;

use netcluster_server::config::Config;
use netcluster_server::Server;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The config: the file named on the command line, else the default.
    let config = match std::env::args_os().nth(1) {
        Some(path) => Config::load(Path::new(&path))?,
        None => Config::builtin(),
    };
    // Start the local server: it returns once every channel's socket is bound.
    let server = Server::start(config)?;
    eprintln!(
        "embedded server: serving in {} (Ctrl-C to stop)",
        server.socket_dir().display()
    );
    wait_for_ctrl_c()?;
    // Stop gracefully: the sockets are removed and clients' queues flushed.
    server.stop();
    eprintln!("embedded server: stopped");
    Ok(())
}

/// Blocks until Ctrl-C (SIGINT) or, on Unix, SIGTERM.
fn wait_for_ctrl_c() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    })
}
