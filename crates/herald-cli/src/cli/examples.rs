//! The "Examples:" sections `--help` prints after the main commands' options. Kept apart from
//! the clap types so that `cli.rs` stays a readable list of arguments.

/// `herald campaign send`.
pub(super) const CAMPAIGN_SEND: &str = "\
Examples:
  herald campaign send welcome.toml --dry-run        # audience, skips by reason, sample requests
  herald campaign send welcome.toml                  # prints the run id, progress, a summary
  herald campaign send welcome.toml --segment users.jsonl
  herald campaign send welcome.toml --resume r20261121143242-375ddc   # after a crash: no gap";

/// `herald campaign status`.
pub(super) const CAMPAIGN_STATUS: &str = "\
Examples:
  herald campaign status r20261121143242-375ddc
  herald campaign status r20261121143242-375ddc --json";

/// `herald worker`.
pub(super) const WORKER: &str = "\
Examples:
  HERALD_PAGE_TOKEN_1000000001=... herald worker
  herald worker --concurrency 128 --prefetch 512 --metrics-addr 0.0.0.0:9465
  herald --amqp amqp://herald:...@rabbitmq:5672/%2f worker";

/// `herald serve`.
pub(super) const SERVE: &str = "\
Examples:
  HERALD_APP_SECRET=... HERALD_VERIFY_TOKEN=... herald serve --addr 0.0.0.0:8080
  herald serve --addr 0.0.0.0:8080 --admin-addr 127.0.0.1:8081   # admin API off the public port
  herald serve --no-ingest --no-results                          # webhook and API only";

/// `herald run`.
pub(super) const RUN: &str = "\
Examples:
  herald run welcome.toml --segment users.csv
  herald --graph-url http://127.0.0.1:8900 run welcome.toml --workers 2   # against `herald sim`";

/// `herald demo`.
pub(super) const DEMO: &str = "\
Examples:
  herald demo                                        # 10,000 users over the embedded queue
  herald demo --users 1000 --rate-per-sec 200 --dir ./demo
  herald --amqp amqp://guest:guest@127.0.0.1:5672/%2f demo   # RabbitMQ and `herald worker`s";
