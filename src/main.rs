//! The `datastore` command: parse arguments, set up logging, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`datastore ls -R big | head`) instead of failing on every later write.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = datastore::cli::helper_form(std::env::args_os().collect());
    let cli = datastore::cli::Cli::parse_from(args);
    match datastore::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("datastore: {}", datastore::cli::error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
