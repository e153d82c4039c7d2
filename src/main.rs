use std::process::ExitCode;

use downradar::config::{Cli, Command};

#[actix_web::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            downradar::diag!("{}", downradar::output::error_report(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Some(Command::Openapi) => {
            use std::io::Write;
            let spec = downradar::api::openapi().to_pretty_json()?;
            downradar::output::closed_pipe_is_end(writeln!(std::io::stdout().lock(), "{spec}"))?;
            Ok(())
        }
        Some(Command::Simulate(args)) if args.target.is_some() => {
            downradar::simulate::run_live(&args).await
        }
        Some(Command::Simulate(args)) => downradar::simulate::run(&args),
        Some(Command::Import(args)) => {
            downradar::telemetry::init_logging(downradar::config::LogFormat::Text);
            downradar::import::run(&args).await
        }
        Some(Command::Backtest(args)) => {
            // The detector's own warnings (buckets taken as missing data) go to stderr too.
            downradar::telemetry::init_logging(downradar::config::LogFormat::Text);
            downradar::backtest::run(&args).await
        }
        Some(Command::Serve(args)) => serve(*args).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(args: downradar::config::ServeArgs) -> anyhow::Result<()> {
    downradar::telemetry::init_logging(args.log_format);
    let app = downradar::startup::Application::build(args).await?;
    app.stop_on_signals()?;
    app.run_until_stopped().await
}
