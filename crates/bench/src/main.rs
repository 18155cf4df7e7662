//! `ncbench`: see the library's docs and `ncbench --help`.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    netcluster_bench::cli::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("ncbench: runs on Linux only (it reads /proc and sets CPU affinity)");
    std::process::ExitCode::from(2)
}
