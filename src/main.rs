//! The `datastore` command: parse arguments, set up logging, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = datastore::cli::Cli::parse();
    datastore::cli::init_logging(cli.verbose);
    match datastore::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("datastore: {}", datastore::cli::error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
