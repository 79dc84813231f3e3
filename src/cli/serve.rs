//! `kfsim serve`: arguments, and the glue that builds the runtime, binds
//! the address, starts the service and stops it on Ctrl-C or SIGTERM; and
//! the embedded service a live run drives when it is given no target.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::Exit;
use crate::scenario::Scenario;
use crate::service::{Clock, Config, Options, Service, State, SystemClock, serve};

/// Arguments of `kfsim serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Create the accounts, contact ways (one per entry) and servicers (one
    /// per agent) of this scenario.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Override a scenario key, as in `kfsim run --set`.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "scenario")]
    pub sets: Vec<String>,
    /// The corpid `gettoken` accepts.
    #[arg(long, default_value = "kfsim")]
    pub corpid: String,
    /// The corpsecret `gettoken` accepts.
    #[arg(long, default_value = "kfsim-secret")]
    pub corpsecret: String,
    /// For benchmarks only: every servicer answers each customer message at
    /// once and ends the session.
    #[arg(long)]
    pub auto_reply: bool,
    /// Drop messages, events and queue items older than this, and forget
    /// customers idle this long (WeCom's sync window).
    #[arg(long, value_name = "DURATION", default_value = "3d", value_parser = duration_us)]
    pub retention: u64,
    /// End a session after this long without a message (WeCom: 48 h).
    #[arg(long, value_name = "DURATION", default_value = "48h", value_parser = duration_us)]
    pub idle_end: u64,
    /// Lifetime of an access_token (WeCom: 7200 s).
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = duration_us)]
    pub token_ttl: u64,
    /// Open channels at most.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_channels: u32,
    /// Close a channel nobody pulled from or sent a batch on for this long
    /// (its customers' sessions end): what a killed driver leaves behind.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_us)]
    pub channel_lease: u64,
    /// Items kept per servicer queue, and per channel queue unless the
    /// channel asks for another size.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_cap: u32,
    /// Entries kept per account for `sync_msg`.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_log_cap: u32,
    /// Customer messages a session waiting in the pool holds for its
    /// servicer; more are refused with 45009.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub pending_cap: u32,
}

fn duration_us(text: &str) -> Result<u64, String> {
    match crate::scenario::units::parse_duration(text)? {
        0 => Err("must be longer than 0".into()),
        us => Ok(us),
    }
}

/// Run `kfsim serve` until Ctrl-C or SIGTERM (then exit 0).
pub fn cmd_serve(args: &ServeArgs) -> anyhow::Result<Exit> {
    let scenario = match &args.scenario {
        Some(path) => Some(Scenario::load(path, &args.sets)?),
        None => None,
    };
    // A second subscriber (tests calling this twice) is not an error.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt().with_target(false).with_ansi(ansi).try_init();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = Config {
        corpid: args.corpid.clone(),
        corpsecret: args.corpsecret.clone(),
        token_ttl_us: args.token_ttl,
        retention_us: args.retention,
        idle_end_us: args.idle_end,
        sync_log_cap: args.sync_log_cap as usize,
        servicer_queue_cap: args.queue_cap as usize,
        channel_queue_cap: args.queue_cap as usize,
        max_channels: args.max_channels as usize,
        channel_lease_us: args.channel_lease,
        pending_cap: args.pending_cap as usize,
        // Tokens and channel ids must differ between runs.
        seed: clock.now_us() ^ u64::from(std::process::id()).rotate_left(40),
        ..Config::default()
    };
    let options = Options { auto_reply: args.auto_reply };
    let svc = match &scenario {
        Some(sc) => Service::from_scenario(sc, cfg, clock, options),
        None => Service::new(State::new(cfg), clock, options),
    };
    let fd_limit = raise_fd_limit();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let figures = svc.with_state(|st, _| st.figures());
        tracing::info!(
            addr = %listener.local_addr()?,
            accounts = figures.accounts.len(),
            servicers = figures.accounts.iter().map(|a| a.servicers).sum::<usize>(),
            auto_reply = args.auto_reply,
            fd_limit,
            "kfsim serve: listening"
        );
        serve(listener, svc, shutdown_signal()).await.context("serving")?;
        tracing::info!("kfsim serve: stopped");
        Ok(Exit::Success)
    })
}

/// Raise the soft limit of open files to the hard one: every connection
/// is a file, and a default soft limit as low as 256 would let a few
/// hundred idle clients lock out all others. The limit now in force.
pub(super) fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, only SIGTERM stops us.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The embedded reference service of a live run, and how to stop it.
pub(super) struct Embedded {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Embedded {
    /// Stop serving and wait for it, at most `within`.
    pub(super) async fn stop(self, within: std::time::Duration) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

/// Start the reference service with the accounts and servicers of `sc` on
/// a free loopback port: its base URL, and the handle that stops it.
pub(super) async fn start_embedded(sc: &Scenario) -> anyhow::Result<(String, Embedded)> {
    let svc = Service::from_scenario(sc, Config::default(), Arc::new(SystemClock), Options::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, svc, async move {
        let _ = stopped.await;
    }));
    Ok((format!("http://{addr}"), Embedded { stop, task }))
}
