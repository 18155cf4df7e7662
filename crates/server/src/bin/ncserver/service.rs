//! ncserver as a Windows service: `--install-service [CONFIG]` registers
//! it with the service control manager (automatic start, LocalSystem),
//! `--uninstall-service` stops and removes it, and `--run-service` (the
//! command line the manager runs) serves until the manager says stop, then
//! stops the daemon as Ctrl-C would: listeners closed, clients flushed.
//!
//! A service has no console, so the installed command line logs to
//! `%ProgramData%\netcluster\ncserver.log`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use netcluster_server::config::Config;
use netcluster_server::Server;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

/// The service's name (`sc query netcluster`, `net start netcluster`).
pub const SERVICE_NAME: &str = "netcluster";
const DISPLAY_NAME: &str = "netcluster daemon";
const DESCRIPTION: &str =
    "netcluster message bus: routes events between local processes (named pipes) and machines";
/// How long `--uninstall-service` waits for a running service to stop.
const STOP_WAIT: Duration = Duration::from_secs(20);
/// What the service tells the manager to expect while it stops.
const STOP_HINT: Duration = Duration::from_secs(10);
/// `ERROR_SERVICE_EXISTS`.
const ERROR_SERVICE_EXISTS: i32 = 1073;
/// `ERROR_SERVICE_DOES_NOT_EXIST`.
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
/// `ERROR_SERVICE_NOT_ACTIVE`: stop sent to a stopped service.
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
/// `ERROR_FAILED_SERVICE_CONTROLLER_CONNECT`: not started by the manager.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;

/// `%ProgramData%\netcluster`, the machine-wide config and log directory.
pub fn program_data() -> PathBuf {
    std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join("netcluster")
}

/// The Win32 error code inside a windows-service error, if any.
fn os_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// Registers the service. A given config is checked now and stored with
/// its absolute path (a service starts in the system directory).
pub fn install(config: Option<&Path>, log: Option<&str>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find ncserver's own path")?;
    let mut args: Vec<OsString> = vec!["--run-service".into()];
    let used = match config {
        Some(c) => {
            let abs = std::path::absolute(c)
                .with_context(|| format!("cannot resolve {}", c.display()))?;
            Config::load(&abs)?;
            args.push(abs.clone().into());
            format!("config {}", abs.display())
        }
        None => "the default config discovery".into(),
    };
    args.push("--log-file".into());
    args.push(program_data().join("ncserver.log").into());
    if let Some(filter) = log {
        args.push("--log".into());
        args.push(filter.into());
    }
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("cannot open the service control manager (run as Administrator)")?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: args,
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = match manager.create_service(&info, ServiceAccess::CHANGE_CONFIG) {
        Ok(s) => s,
        Err(e) if os_code(&e) == Some(ERROR_SERVICE_EXISTS) => anyhow::bail!(
            "the service {SERVICE_NAME:?} is already installed; remove it first with `ncserver --uninstall-service`"
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot install the service {SERVICE_NAME:?}"))
        }
    };
    // The description is cosmetic: a failure to set it is not worth failing for.
    let _ = service.set_description(DESCRIPTION);
    println!(
        "installed the service {SERVICE_NAME:?}: {} with {used}; it starts at boot, or now with `sc start {SERVICE_NAME}`; log: {}",
        exe.display(),
        program_data().join("ncserver.log").display()
    );
    Ok(())
}

/// Stops the service if it runs, and removes it.
pub fn uninstall() -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot open the service control manager (run as Administrator)")?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = match manager.open_service(SERVICE_NAME, access) {
        Ok(s) => s,
        Err(e) if os_code(&e) == Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            anyhow::bail!("the service {SERVICE_NAME:?} is not installed")
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the service {SERVICE_NAME:?}"))
        }
    };
    let status = service.query_status().context("cannot query the service")?;
    if status.current_state != ServiceState::Stopped {
        match service.stop() {
            Ok(_) => {}
            Err(e) if os_code(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => {}
            Err(e) => return Err(e).context("cannot stop the service"),
        }
        let deadline = Instant::now() + STOP_WAIT;
        while service.query_status()?.current_state != ServiceState::Stopped {
            if Instant::now() > deadline {
                anyhow::bail!("the service did not stop within {STOP_WAIT:?}; try again");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("stopped the service {SERVICE_NAME:?}");
    }
    service.delete().context("cannot remove the service")?;
    println!("removed the service {SERVICE_NAME:?}");
    Ok(())
}

/// The config argument of `--run-service`, for the service's main function.
static CONFIG_ARG: OnceLock<Option<PathBuf>> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the service control manager, which calls
/// `service_main` on a thread of its own; returns when the service stopped.
pub fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let _ = CONFIG_ARG.set(config);
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => Ok(()),
        Err(e) if os_code(&e) == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => anyhow::bail!(
            "--run-service is for the service control manager; run ncserver without it, or install it with --install-service"
        ),
        Err(e) => Err(e).context("cannot start the service dispatcher"),
    }
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!("service failed: {e:#}");
    }
}

/// The status the manager is given.
fn status(state: ServiceState, exit: u32, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::Win32(0)
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

/// Runs the daemon until the manager sends stop or shutdown.
fn serve() -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = mpsc::channel();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = stop_tx.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = service_control_handler::register(SERVICE_NAME, handler)
        .context("cannot register the service control handler")?;
    handle.set_service_status(status(ServiceState::StartPending, 0, STOP_HINT))?;
    let started =
        crate::find_config(CONFIG_ARG.get().cloned().flatten()).and_then(|(config, how)| {
            tracing::info!("service {SERVICE_NAME}: using {how}");
            Server::start(config).context("cannot start ncserver")
        });
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            handle.set_service_status(status(
                ServiceState::Stopped,
                u32::from(crate::EXIT_FAILURE),
                Duration::ZERO,
            ))?;
            return Err(e);
        }
    };
    handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO))?;
    tracing::info!("service {SERVICE_NAME} running");
    // A closed channel (the handler dropped) also means stop.
    let _ = stop_rx.recv();
    tracing::info!("service {SERVICE_NAME}: stop requested, stopping");
    handle.set_service_status(status(ServiceState::StopPending, 0, STOP_HINT))?;
    server.stop();
    tracing::info!("service {SERVICE_NAME} stopped");
    handle.set_service_status(status(ServiceState::Stopped, 0, Duration::ZERO))?;
    Ok(())
}
