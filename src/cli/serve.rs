//! `kfsim serve`: arguments, and the glue that builds the runtime, binds
//! the address, starts the service and stops it on Ctrl-C or SIGTERM; and
//! the embedded service a live run drives when it is given no target.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use std::time::Duration;

use super::{ArgError, Exit};
use crate::scenario::{Callback, Faults, Scenario, TimeDist};
use crate::service::crypto::CallbackCrypto;
use crate::service::faults::ApiFaults;
use crate::service::push::{CallbackFaults, CallbackSettings, VerifyError};
use crate::service::{Clock, Config, Options, Service, State, SystemClock, serve};

/// Arguments of `kfsim serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: the scenario's [wecom] listen, else 127.0.0.1:8080].
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Create the accounts, contact ways (one per entry) and servicers (one
    /// per agent) of this scenario.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Override a scenario key, as in `kfsim run --set`.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "scenario")]
    pub sets: Vec<String>,
    /// The corpid `gettoken` accepts [default: the scenario's [wecom] corpid, else kfsim].
    #[arg(long)]
    pub corpid: Option<String>,
    /// The corpsecret `gettoken` accepts [default: the scenario's [wecom] corpsecret, else
    /// kfsim-secret].
    #[arg(long)]
    pub corpsecret: Option<String>,
    /// For benchmarks only: every servicer answers each customer message at
    /// once and ends the session.
    #[arg(long)]
    pub auto_reply: bool,
    /// Threads that serve requests [default: one per CPU this process may
    /// run on]. With 1, everything runs on one thread, without the
    /// cross-thread wake-ups of a pool: how to run it pinned to one core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
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
    /// Customers remembered at most (about 1 KB each, with their
    /// sessions); a new one beyond them is refused with 45009 until the
    /// retention forgets idle ones.
    #[arg(long, value_name = "N", default_value_t = 2_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_customers: u32,
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
    /// MiB of customer messages all sessions waiting for a servicer hold
    /// together (each weighed with its ids, as the `sync_msg` log weighs
    /// it); more are refused with 45009.
    #[arg(long, value_name = "MIB", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub pending_memory: u32,
    /// Hand every account of `--scenario` to the API (通过API管理): new
    /// sessions stay in state 0 for the middleware.
    #[arg(long, requires = "scenario")]
    pub api_managed: bool,
    #[command(flatten)]
    /// Where `kf_msg_or_event` callbacks go.
    pub callback: CallbackArgs,
    #[command(flatten)]
    /// Faults to inject.
    pub faults: FaultArgs,
}

/// Faults the platform injects, for resilience tests of a middleware; each
/// is counted in `/metrics`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// Add latency to API calls: exponential with this mean.
    #[arg(long, value_name = "DURATION", value_parser = duration_us)]
    pub fault_api_latency: Option<u64>,
    /// Share of API calls answered -1 (系统繁忙).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
    pub fault_api_error_rate: f64,
    /// Share of API calls answered 45009 (frequency limit).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
    pub fault_api_busy_rate: f64,
    /// Access tokens stop working this long after they are issued, while
    /// expires_in still says --token-ttl (42001 on the next call).
    #[arg(long, value_name = "DURATION", value_parser = duration_us)]
    pub fault_token_lifetime: Option<u64>,
    /// Hold each callback back: exponential with this mean.
    #[arg(long, value_name = "DURATION", value_parser = duration_us)]
    pub fault_callback_delay: Option<u64>,
    /// Share of callbacks never sent.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
    pub fault_callback_drop_rate: f64,
    /// Share of callbacks delivered twice.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = share)]
    pub fault_callback_duplicate_rate: f64,
}

impl FaultArgs {
    /// The scenario's `[wecom.faults]` with what the flags set on top.
    fn over(&self, f: &Faults) -> Faults {
        let exp = |mean_us: u64| TimeDist::Exponential { mean_us: mean_us as f64 };
        let or = |flag: f64, file: f64| if flag > 0.0 { flag } else { file };
        Faults {
            api_latency: self.fault_api_latency.map(exp).or(f.api_latency),
            api_error_rate: or(self.fault_api_error_rate, f.api_error_rate),
            api_busy_rate: or(self.fault_api_busy_rate, f.api_busy_rate),
            token_lifetime_us: self.fault_token_lifetime.or(f.token_lifetime_us),
            callback_delay: self.fault_callback_delay.map(exp).or(f.callback_delay),
            callback_drop_rate: or(self.fault_callback_drop_rate, f.callback_drop_rate),
            callback_duplicate_rate: or(self.fault_callback_duplicate_rate, f.callback_duplicate_rate),
        }
    }
}

fn api_faults(f: &Faults) -> ApiFaults {
    ApiFaults { latency: f.api_latency, error_rate: f.api_error_rate, busy_rate: f.api_busy_rate }
}

fn callback_faults(f: &Faults) -> CallbackFaults {
    CallbackFaults {
        delay: f.callback_delay,
        drop_rate: f.callback_drop_rate,
        duplicate_rate: f.callback_duplicate_rate,
    }
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a share from 0 to 1, like 0.05".into()),
    }
}

/// The callback a middleware receives (WeCom's 接收消息 settings).
#[derive(Debug, clap::Args)]
pub struct CallbackArgs {
    /// Send a `kf_msg_or_event` callback to this URL for every customer
    /// message and event, as WeCom does; the URL is checked first. Each
    /// callback setting not given by a flag is the scenario's
    /// `[wecom.callback]`, else its default.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// The callback's Token [default: the scenario's].
    #[arg(long, value_name = "TOKEN")]
    pub callback_token: Option<String>,
    /// The callback's EncodingAESKey, 43 characters [default: the scenario's].
    #[arg(long, value_name = "KEY")]
    pub callback_aes_key: Option<String>,
    /// How long the middleware has to answer a callback [default: the scenario's, else 5s as WeCom].
    #[arg(long, value_name = "DURATION", value_parser = duration_us)]
    pub callback_timeout: Option<u64>,
    /// Attempts after one that failed [default: the scenario's, else 3 as WeCom].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub callback_retries: Option<u32>,
    /// The wait before each retry of a callback, at most 1h [default: the scenario's, else 0s: at
    /// once].
    #[arg(long, value_name = "DURATION", value_parser = retry_delay_us)]
    pub callback_retry_delay: Option<u64>,
    /// Callbacks of one account out at once; more are coalesced into one [default: the
    /// scenario's, else 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub callback_max_in_flight: Option<u32>,
    /// Keep checking the callback URL this long before giving up (exit 3):
    /// the middleware may still be starting.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_us)]
    pub callback_wait: u64,
}

impl CallbackArgs {
    /// The settings, each from its flag, else from the scenario's
    /// `[wecom.callback]`, else its default, checked (an EncodingAESKey of
    /// the wrong length is an argument error). Without a URL from either,
    /// no callbacks.
    pub fn settings(
        &self,
        corpid: &str,
        file: Option<&Callback>,
    ) -> Result<Option<CallbackSettings>, ArgError> {
        let url = match (&self.callback_url, file) {
            (Some(url), _) if let Err(m) = crate::scenario::units::check_callback_url(url) => {
                return Err(ArgError(format!("--callback-url: {m}")));
            }
            (Some(url), _) => url.clone(),
            (None, Some(Callback { url: Some(url), .. })) => url.clone(),
            (None, Some(_)) => {
                return Err(ArgError(
                    "[wecom.callback] has no `url`: give it there or with --callback-url".into(),
                ));
            }
            (None, None) if self.callback_token.is_some() || self.callback_aes_key.is_some() => {
                return Err(ArgError(
                    "--callback-token and --callback-aes-key need --callback-url (or [wecom.callback] url)"
                        .into(),
                ));
            }
            (None, None) => return Ok(None),
        };
        let token = self.callback_token.as_deref().or(file.map(|c| c.token.as_str()));
        let key = self.callback_aes_key.as_deref().or(file.map(|c| c.encoding_aes_key.as_str()));
        let (Some(token), Some(key)) = (token, key) else {
            return Err(ArgError(
                "--callback-url needs the callback's Token and EncodingAESKey: --callback-token and \
                 --callback-aes-key, or [wecom.callback] token and encoding_aes_key in the --scenario"
                    .into(),
            ));
        };
        let crypto =
            CallbackCrypto::new(token, key, corpid).map_err(|e| ArgError(format!("callback: {e}")))?;
        use crate::scenario as d;
        let timeout_us = self.callback_timeout.or(file.map(|c| c.timeout_us));
        let retry_delay_us = self.callback_retry_delay.or(file.map(|c| c.retry_delay_us));
        let max_in_flight = self.callback_max_in_flight.or(file.map(|c| c.max_in_flight));
        Ok(Some(CallbackSettings {
            url,
            crypto,
            corpid: corpid.to_owned(),
            timeout: Duration::from_micros(timeout_us.unwrap_or(d::DEFAULT_CALLBACK_TIMEOUT_US)),
            retries: self.callback_retries.or(file.map(|c| c.retries)).unwrap_or(d::DEFAULT_CALLBACK_RETRIES),
            retry_delay: Duration::from_micros(retry_delay_us.unwrap_or(d::DEFAULT_CALLBACK_RETRY_DELAY_US)),
            max_in_flight: max_in_flight.unwrap_or(d::DEFAULT_CALLBACK_MAX_IN_FLIGHT),
            faults: CallbackFaults::default(),
        }))
    }
}

/// The callback settings of a scenario's `[wecom.callback]`, sent to `url`.
pub(super) fn callback_from_file(
    c: &Callback,
    url: &str,
    corpid: &str,
) -> Result<CallbackSettings, ArgError> {
    let crypto = CallbackCrypto::new(&c.token, &c.encoding_aes_key, corpid)
        .map_err(|e| ArgError(format!("[wecom.callback]: {e}")))?;
    Ok(CallbackSettings {
        url: url.to_owned(),
        crypto,
        corpid: corpid.to_owned(),
        timeout: Duration::from_micros(c.timeout_us),
        retries: c.retries,
        retry_delay: Duration::from_micros(c.retry_delay_us),
        max_in_flight: c.max_in_flight,
        faults: CallbackFaults::default(),
    })
}

/// The pause between two checks of a callback URL.
const VERIFY_PAUSE: Duration = Duration::from_millis(200);

/// Check the callback URL until it verifies or `wait` has passed.
pub(super) async fn verify_callback(s: &CallbackSettings, wait: Duration, seed: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now_s = SystemClock.now_us() / 1_000_000;
        // each check gets what is left of the wait at most: one check's
        // own timeout (5 s) against a URL that never answered overran a
        // wait of 3 s by 2 s (found by probing)
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let check = CallbackSettings { timeout: s.timeout.min(left), ..s.clone() };
        match crate::service::push::verify_url(&check, seed, now_s).await {
            Ok(()) => return Ok(()),
            // a wrong answer will not get right by waiting
            Err(e @ VerifyError::WrongAnswer { .. }) => return Err(e.into()),
            // a check after the pause would have next to no time left
            Err(e) if tokio::time::Instant::now() + VERIFY_PAUSE >= deadline => {
                return Err(
                    anyhow::Error::new(e).context(format!("the callback URL did not verify within {wait:?}"))
                );
            }
            Err(_) => tokio::time::sleep(VERIFY_PAUSE).await,
        }
    }
}

fn duration_us(text: &str) -> Result<u64, String> {
    match crate::scenario::units::parse_duration(text)? {
        0 => Err("must be longer than 0".into()),
        us => Ok(us),
    }
}

/// `--callback-retry-delay`: 0 (at once) to an hour.
fn retry_delay_us(text: &str) -> Result<u64, String> {
    match crate::scenario::units::parse_duration(text)? {
        us if us > crate::scenario::MAX_RETRY_DELAY_US => Err("must be at most 1h".into()),
        us => Ok(us),
    }
}

/// Run `kfsim serve` until Ctrl-C or SIGTERM (then exit 0).
pub fn cmd_serve(args: &ServeArgs) -> anyhow::Result<Exit> {
    let mut scenario = match &args.scenario {
        Some(path) => Some(Scenario::load(path, &args.sets)?),
        None => None,
    };
    if args.api_managed {
        for a in scenario.iter_mut().flat_map(|sc| sc.accounts.iter_mut()) {
            a.api_managed = true;
        }
    }
    let wecom = scenario.as_ref().map(|sc| sc.wecom.clone()).unwrap_or_default();
    let corpid = args.corpid.clone().or(wecom.corpid.clone()).unwrap_or_else(|| "kfsim".into());
    let corpsecret =
        args.corpsecret.clone().or(wecom.corpsecret.clone()).unwrap_or_else(|| "kfsim-secret".into());
    let addr = args.addr.or(wecom.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let faults = args.faults.over(&wecom.faults);
    let callbacks = args
        .callback
        .settings(&corpid, wecom.callback.as_ref())?
        .map(|s| CallbackSettings { faults: callback_faults(&faults), ..s });
    if faults.api_error_rate + faults.api_busy_rate > 1.0 {
        return Err(ArgError("the -1 and 45009 fault shares add up to more than 1".into()).into());
    }
    // A second subscriber (tests calling this twice) is not an error.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt().with_target(false).with_ansi(ansi).try_init();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = Config {
        corpid,
        corpsecret,
        token_ttl_us: args.token_ttl,
        token_invalid_after_us: faults.token_lifetime_us,
        retention_us: args.retention,
        idle_end_us: args.idle_end,
        sync_log_cap: args.sync_log_cap as usize,
        servicer_queue_cap: args.queue_cap as usize,
        channel_queue_cap: args.queue_cap as usize,
        max_channels: args.max_channels as usize,
        max_customers: args.max_customers as usize,
        channel_lease_us: args.channel_lease,
        pending_cap: args.pending_cap as usize,
        pending_bytes_cap: (args.pending_memory as usize) << 20,
        // Tokens and channel ids must differ between runs.
        seed: clock.now_us() ^ u64::from(std::process::id()).rotate_left(40),
        ..Config::default()
    };
    let seed = cfg.seed;
    let options = Options {
        auto_reply: args.auto_reply,
        callbacks: callbacks.clone(),
        api_faults: api_faults(&faults),
        body_read: None,
        body_budget: None,
    };
    let svc = match &scenario {
        Some(sc) => Service::from_scenario(sc, cfg, clock, options),
        None => Service::new(State::new(cfg), clock, options),
    };
    let fd_limit = raise_fd_limit();
    let threads = args.threads.map_or_else(cpus, usize::from);
    let runtime = runtime(threads)?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        if let Some(s) = &callbacks {
            verify_callback(s, Duration::from_micros(args.callback.callback_wait), seed).await?;
            tracing::info!(url = %s.url, "kfsim serve: the callback URL verified");
        }
        let stop = shutdown_signal();
        let figures = svc.with_state(|st, _| st.figures());
        tracing::info!(
            addr = %listener.local_addr()?,
            accounts = figures.accounts.len(),
            servicers = figures.accounts.iter().map(|a| a.servicers).sum::<usize>(),
            auto_reply = args.auto_reply,
            fd_limit,
            threads,
            "kfsim serve: listening"
        );
        serve(listener, svc.clone(), stop).await.context("serving")?;
        // the totals of this service's life, as `/metrics` last said them: a
        // load test that restarts the service reconciles each life with them
        let c = svc.with_state(|st, _| st.figures().counters);
        tracing::info!(
            customer_messages = c.customer_messages,
            routed = c.messages_routed,
            servicer_messages = c.servicer_messages,
            sessions_started = c.sessions_started,
            rejected = c.rejected,
            ended = c.ended,
            channels_expired = c.channels_expired,
            customers_refused = c.customers_refused,
            "kfsim serve: stopped"
        );
        Ok(Exit::Success)
    })
}

/// The CPUs this process may run on (its affinity: one under `taskset -c 0`).
pub(super) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A tokio runtime of `threads` workers. On one thread a pool's scheduler
/// only adds cross-thread bookkeeping to every wake-up: a tenth of a
/// customer message's cost on one core (`kfsim serve` under wrk, three
/// alternating rounds: 0.40 of the trivial server instead of 0.36), so one
/// thread runs tokio's current-thread scheduler.
pub(super) fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("starting tokio")
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

/// Ctrl-C, SIGTERM or SIGHUP (unless ignored: `nohup`). The handlers are
/// installed when this is called, not when the future is first polled, so
/// that a signal sent as soon as "listening" is logged is not missed (it
/// ended the process by the default action).
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    // a handler that cannot be installed leaves that signal's default action
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    let hup = if super::hangup_ignored() { None } else { signal(SignalKind::hangup()).ok() };
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(int) => {}
            _ = recv(term) => {}
            _ = recv(hup) => {}
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
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

/// kfsim as WeCom for a middleware under test: where it listens, the
/// credentials it accepts, and the callbacks it sends.
#[derive(Debug, Clone)]
pub struct WeComSetup {
    /// The address the middleware calls instead of qyapi.weixin.qq.com.
    pub listen: SocketAddr,
    /// The corpid `gettoken` accepts.
    pub corpid: String,
    /// The corpsecret `gettoken` accepts.
    pub corpsecret: String,
    /// Where and how `kf_msg_or_event` callbacks go.
    pub callbacks: CallbackSettings,
    /// How long the callback URL may take to verify (the middleware may
    /// still be starting).
    pub verify_within: Duration,
    /// Faults injected into the middleware's API calls (`[wecom.faults]`).
    pub faults: Faults,
}

impl WeComSetup {
    /// The setup from a scenario's `[wecom]` with `url` as the callback URL
    /// and `listen` instead of `[wecom] listen` when given.
    pub fn from_scenario(
        sc: &Scenario,
        url: &str,
        listen: Option<SocketAddr>,
    ) -> Result<WeComSetup, ArgError> {
        if !url.starts_with("http://") {
            return Err(ArgError(format!(
                "--middleware {url}: expected the callback URL, http://HOST:PORT/PATH"
            )));
        }
        let w = &sc.wecom;
        let corpid = w.corpid.clone().unwrap_or_else(|| "kfsim".into());
        let file = w.callback.as_ref().ok_or_else(|| {
            ArgError(
                "a run against a middleware needs the callback's Token and EncodingAESKey: \
                 [wecom.callback] token = \"…\" and encoding_aes_key = \"…\" in the scenario"
                    .into(),
            )
        })?;
        let callbacks = CallbackSettings {
            faults: callback_faults(&w.faults),
            ..callback_from_file(file, url, &corpid)?
        };
        Ok(WeComSetup {
            listen: listen.or(w.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            corpsecret: w.corpsecret.clone().unwrap_or_else(|| "kfsim-secret".into()),
            corpid,
            callbacks,
            verify_within: Duration::from_secs(30),
            faults: w.faults.clone(),
        })
    }
}

/// Start WeCom for a middleware: the reference service with every account
/// of `sc` API-managed, on `setup.listen`, sending callbacks; then wait
/// until the callback URL verifies. Its URL for the driver, the running
/// service, and its handle.
pub(super) async fn start_wecom(
    sc: &Scenario,
    setup: &WeComSetup,
) -> anyhow::Result<(String, Embedded, Service)> {
    let mut sc = sc.clone();
    for a in &mut sc.accounts {
        a.api_managed = true;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = Config {
        corpid: setup.corpid.clone(),
        corpsecret: setup.corpsecret.clone(),
        token_invalid_after_us: setup.faults.token_lifetime_us,
        // tokens and callback nonces must differ between runs
        seed: clock.now_us() ^ u64::from(std::process::id()).rotate_left(40),
        ..Config::default()
    };
    let seed = cfg.seed;
    let options = Options {
        auto_reply: false,
        callbacks: Some(setup.callbacks.clone()),
        api_faults: api_faults(&setup.faults),
        body_read: None,
        body_budget: None,
    };
    let svc = Service::from_scenario(&sc, cfg, clock, options);
    let listener = tokio::net::TcpListener::bind(setup.listen).await.with_context(|| {
        format!("binding {} (where kfsim's WeCom listens: [wecom] listen or --listen)", setup.listen)
    })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, svc.clone(), async move {
        let _ = stopped.await;
    }));
    let embedded = Embedded { stop, task };
    if let Err(e) = verify_callback(&setup.callbacks, setup.verify_within, seed).await {
        embedded.stop(Duration::from_secs(1)).await;
        return Err(
            e.context(format!("the middleware's callback URL {} never verified", setup.callbacks.url))
        );
    }
    // the driver calls on loopback whatever address the middleware uses
    let host = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
    Ok((format!("http://{}", SocketAddr::new(host, addr.port())), embedded, svc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that takes connections and never answers is given up on
    /// when the wait is over, whatever one check's timeout: a check of
    /// 60 s used to take its 60 s against a wait of 1 s.
    #[tokio::test]
    async fn a_check_of_the_callback_url_ends_with_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cb", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let crypto =
            CallbackCrypto::new("tok", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "kfsim").unwrap();
        let s = CallbackSettings {
            url,
            crypto,
            corpid: "kfsim".into(),
            timeout: Duration::from_secs(60),
            retries: 3,
            retry_delay: Duration::ZERO,
            max_in_flight: 8,
            faults: CallbackFaults::default(),
        };
        let wait = Duration::from_secs(1);
        let started = std::time::Instant::now();
        // bounded, so that the test fails rather than waits out the check
        let checked = tokio::time::timeout(Duration::from_secs(30), verify_callback(&s, wait, 1)).await;
        let took = started.elapsed();
        let e = checked.expect("the check ended with the wait, not with its own 60 s timeout").unwrap_err();
        assert!(format!("{e:#}").contains("did not verify within 1s"), "{e:#}");
        // a slow machine may be late by seconds, not by the check's timeout
        assert!(took < wait + Duration::from_secs(20), "{took:?}");
    }
}
