//! Fuzzes the daemon's config parser (`Config::parse`), the decoder of the
//! untrusted text of config files and of configs sent in reload requests.
//!
//! Any input must give a config or an error with a position inside the
//! text, never a panic. A config that parses is rendered back as JSON
//! (`showconfig`'s form); that must load again (`Config::from_value`, the
//! reload path) to the same effective config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcluster_server::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.json") {
        Ok(cfg) => {
            let shown = cfg.to_json();
            let again = Config::from_value(&shown)
                .unwrap_or_else(|e| panic!("showconfig's output does not load: {e}\n{shown:#}"));
            assert_eq!(
                again.to_json(),
                shown,
                "the effective config changed on reload"
            );
        }
        Err(ConfigError::Invalid(d)) => {
            let lines = text.split('\n').count();
            assert!(
                d.line >= 1 && d.line <= lines,
                "line {} of {lines}: {d}",
                d.line
            );
            assert!(d.column >= 1, "{d}");
            let _ = d.to_string();
        }
        Err(e) => panic!("parse gave a non-diagnostic error: {e}"),
    }
});
