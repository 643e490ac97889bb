//! The command line, as clap types (README, "Usage"). Parsing only: `commands` runs them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod examples;
#[cfg(test)]
mod tests;

/// Herald sends Facebook Messenger campaigns through RabbitMQ and a fleet of workers.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Settings every command accepts; they override `herald.toml` and `HERALD_*` variables.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Configuration file (default: ./herald.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// RabbitMQ URL (overrides HERALD_AMQP_URL).
    #[arg(long = "amqp", global = true, value_name = "URL")]
    pub(crate) amqp_url: Option<String>,
    /// Database URL (overrides HERALD_DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Graph API base URL (overrides HERALD_GRAPH_URL), e.g. a `herald sim` address.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) graph_url: Option<String>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Declare every exchange and queue (idempotent).
    Topology,
    /// Consume herald.send and deliver jobs to the Graph API.
    #[command(after_help = examples::WORKER)]
    Worker(WorkerArgs),
    /// Create, inspect and control campaign runs.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Producer and workers in one process over an in-process queue.
    #[command(after_help = examples::RUN)]
    Run(RunArgs),
    /// Stored campaigns: saved under their id, every version kept, sent by `POST
    /// /campaigns/{id}/trigger`.
    #[command(subcommand)]
    Campaigns(CampaignsCommand),
    /// Manage the profile store.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Webhook receiver, admin API and the ingest and results consumers.
    #[command(after_help = examples::SERVE)]
    Serve(ServeArgs),
    /// A Graph API simulator for tests, demos and benchmarks.
    Sim(SimArgs),
    /// Inspect and replay dead-lettered jobs.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Run a sample campaign against the simulator, end to end.
    #[command(after_help = examples::DEMO)]
    Demo(DemoArgs),
    /// Signed refs for m.me links and plugins (HERALD_REF_SECRET).
    #[command(subcommand)]
    Refs(RefsCommand),
    /// Print a completion script for a shell, e.g. `herald completions bash >
    /// /etc/bash_completion.d/herald`.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `herald man > /usr/local/share/man/man1/herald.1`.
    Man,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RefsCommand {
    /// Print a signed ref that links whoever opens `https://m.me/PAGE?ref=REF` to EXTERNAL_ID.
    Sign {
        /// The user the link is for.
        external_id: String,
        /// The page whose m.me link carries the ref; the ref is valid on that page only.
        #[arg(long, value_name = "PAGE_ID")]
        page: String,
        /// How long the ref links (e.g. 30d, 12h; at most 366d).
        #[arg(long, default_value = "30d")]
        ttl: String,
        /// Print the ref, its expiry and the m.me link as JSON instead of the ref alone.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Graph calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Unacknowledged jobs the broker may hand this worker.
    #[arg(long, default_value_t = 256)]
    pub(crate) prefetch: u16,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub(crate) metrics_addr: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CampaignCommand {
    /// Expand the segment and publish one job per user.
    #[command(after_help = examples::CAMPAIGN_SEND)]
    Send(SendArgs),
    /// Totals by status for a run.
    #[command(after_help = examples::CAMPAIGN_STATUS)]
    Status {
        /// The run to report on (`campaign send` prints it first), or a schedule (`s…`).
        run_id: String,
        /// Print the report as JSON (the shape `GET /campaigns/runs/{run_id}` answers).
        #[arg(long)]
        json: bool,
    },
    /// Stop sending a run's jobs until resumed (every worker, including ones started later).
    Pause {
        /// The run to pause.
        run_id: String,
    },
    /// Resume a paused run, or with --page a halted page.
    Resume(ResumeArgs),
    /// Cancel a run (its unsent jobs end as `cancelled`), or a schedule's future occurrences.
    /// Final.
    Cancel {
        /// The run to cancel, or a schedule (`s…`, from `campaign schedules`).
        run_id: String,
    },
    /// List scheduled campaigns (`send_at` or `cron`): state, next occurrence, runs started.
    Schedules {
        /// Print them as JSON (the shape `GET /campaigns/schedules` answers).
        #[arg(long)]
        json: bool,
    },
    /// Render for one user and send straight to the Graph API.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run to resume.
    #[arg(required_unless_present = "page", conflicts_with = "page")]
    pub(crate) run_id: Option<String>,
    /// Resume a halted page instead (e.g. after replacing its token everywhere).
    #[arg(long, value_name = "PAGE_ID")]
    pub(crate) page: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The campaign file (TOML, or the same document as JSON).
    pub(crate) campaign: PathBuf,
    /// Segment file (CSV or JSONL) to use instead of the campaign's `segment.file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) segment: Option<PathBuf>,
    /// Publish nothing: print the audience, the skips by reason and a few rendered requests.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Continue an interrupted run after its last confirmed row, with the same job ids.
    #[arg(long, value_name = "RUN_ID")]
    pub(crate) resume: Option<String>,
    /// Abort on the first malformed row instead of reporting and skipping it.
    #[arg(long)]
    pub(crate) strict: bool,
    /// People the campaign's page can message, for the check against Graph's daily call
    /// budget (200 calls each per 24 h). Default: the store's count for the page.
    #[arg(long, value_name = "N")]
    pub(crate) engaged_users: Option<u64>,
    /// With --dry-run: also say how long the campaign takes at this rate (calls/s).
    #[arg(long, value_name = "N", requires = "dry_run")]
    pub(crate) rate: Option<u32>,
    /// Send even when the campaign needs more calls than the page's daily budget has.
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) over_budget: bool,
    /// Start at most one run per KEY (for this campaign, within 7 days): a retry with the same
    /// key prints the run the first start created and publishes nothing; the same key with a
    /// different campaign file or options exits 65.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["resume", "dry_run"])]
    pub(crate) idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The campaign file (TOML, or the same document as JSON).
    pub(crate) campaign: PathBuf,
    /// The test user's page-scoped ID on the campaign's page; the message is really sent.
    #[arg(long)]
    pub(crate) psid: String,
    /// An attribute of the test user for rendering (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub(crate) attrs: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The campaign file (TOML, or the same document as JSON).
    pub(crate) campaign: PathBuf,
    /// Segment file (CSV or JSONL) to use instead of the campaign's `segment.file`.
    #[arg(long, value_name = "FILE")]
    pub(crate) segment: Option<PathBuf>,
    /// Workers in this process (they share each page's limit, as a fleet does).
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// Graph calls in flight at once, per worker.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Unacknowledged jobs each worker may hold.
    #[arg(long, default_value_t = 256)]
    pub(crate) prefetch: u16,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Users in the sample segment.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) users: usize,
    /// The sample page's send limit in the simulator (and Herald's ceiling for it).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) rate_per_sec: u32,
    /// Workers: tasks on the embedded queue, `herald worker` processes with --amqp.
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: usize,
    /// Where to write the sample campaign and segment (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CampaignsCommand {
    /// Validate a campaign file and save it under its id (a new version when it changed).
    Put {
        /// The campaign file (TOML, or the same document as JSON).
        file: PathBuf,
    },
    /// The latest version of every stored campaign.
    List {
        /// Print them as JSON (the shape `GET /campaigns` answers).
        #[arg(long)]
        json: bool,
    },
    /// Print a stored campaign's document: the latest version, or version VERSION.
    Get {
        /// The campaign's id.
        campaign_id: String,
        /// A saved version (1, 2, ...); the latest without it.
        #[arg(value_name = "VERSION")]
        saved: Option<i64>,
    },
    /// Delete a stored campaign (its versions stay for the runs that name them).
    Delete {
        /// The campaign's id.
        campaign_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Upsert users from a CSV or JSONL file (the columns of a segment file).
    Import {
        /// CSV (header row) or JSONL (`.jsonl`, `.ndjson`) file with the columns of a segment.
        file: PathBuf,
        /// The page the messenger_ids belong to: also links each Messenger identity.
        #[arg(long, value_name = "PAGE_ID")]
        page: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where the webhook, the admin API, /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,
    /// Serve the admin API and /metrics here instead, so that --addr (the one Meta must reach)
    /// has only /webhook, /healthz and /readyz.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_addr: Option<SocketAddr>,
    /// Do not run the ingest consumer (webhook events into the store) in this process.
    #[arg(long)]
    pub(crate) no_ingest: bool,
    /// Do not run the results consumer (delivery results into the store) in this process.
    #[arg(long)]
    pub(crate) no_results: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Where the simulated Graph API and its `/_sim/*` inspection endpoints are served.
    #[arg(long, default_value = "127.0.0.1:8900")]
    pub(crate) addr: SocketAddr,
    /// Fixed latency added to every answer.
    #[arg(long, default_value_t = 0)]
    pub(crate) latency_ms: u64,
    /// Accepted calls per second per page; more get code 613.
    #[arg(long, default_value_t = 300)]
    pub(crate) rate_per_sec: u32,
    /// People each page can message: its rolling call budget is 200 calls × this per
    /// --budget-window, reported in X-Business-Use-Case-Usage; over it, calls get 613.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub(crate) engaged_users: u64,
    /// The call budget's rolling window (24h as on Graph; e.g. 60s to exhaust it in a test).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub(crate) budget_window: String,
    /// Probability (0..1) of an HTTP 5xx answer.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) fail_rate: f64,
    /// App secret: requires appsecret_proof and signs webhook callbacks (or HERALD_APP_SECRET).
    #[arg(long, value_name = "SECRET", hide_default_value = true)]
    pub(crate) app_secret: Option<String>,
    /// A valid page token (repeatable). Without any, every non-empty token is valid.
    #[arg(long = "token", value_name = "PAGE_ID=TOKEN")]
    pub(crate) tokens: Vec<String>,
    /// Where signed delivery, read and inbound events are posted.
    #[arg(long, value_name = "URL")]
    pub(crate) webhook_url: Option<String>,
    /// Post a delivery and a read receipt for every accepted message (needs --webhook-url).
    #[arg(long, requires = "webhook_url")]
    pub(crate) receipts: bool,
    /// Delay between accepting a message and posting its delivery receipt [default: 50].
    #[arg(long, value_name = "MS", requires = "receipts")]
    pub(crate) delivery_delay_ms: Option<u64>,
    /// Delay between accepting a message and posting its read receipt [default: 200].
    #[arg(long, value_name = "MS", requires = "receipts")]
    pub(crate) read_delay_ms: Option<u64>,
    /// Post a message echo (is_echo, with the send's metadata and mid) for every accepted
    /// message, as Meta does when the page subscribes to message_echoes (needs --webhook-url).
    #[arg(long, requires = "webhook_url")]
    pub(crate) echoes: bool,
    /// Delay between accepting a message and posting its echo [default: 100].
    #[arg(long, value_name = "MS", requires = "echoes")]
    pub(crate) echo_delay_ms: Option<u64>,
    /// Probability (0..1) that an accepted call's answer is lost: the message counts as sent
    /// (and is echoed) but the connection closes without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) lost_answer_rate: f64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadCommand {
    /// List dead-lettered jobs (job id, attempts, Graph code, reason), leaving them in place.
    List {
        /// Only this run's jobs.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
    },
    /// Send dead-lettered jobs back to herald.send with their attempt count reset.
    Replay {
        /// Only this run's jobs.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Only jobs whose last Graph error had this code.
        #[arg(long, value_name = "N")]
        code: Option<u32>,
    },
}
