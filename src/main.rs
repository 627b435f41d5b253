//! The `datastore` command: parse arguments, set up logging, run the subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`datastore ls -R big | head`) instead of failing on every later write.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Large buffers (chunks of MiBs) come and go all the time; with glibc's adaptive mmap
    // threshold they end up in heap arenas that are not returned to the system, and the mount
    // daemon's memory would grow far past its budgets. A fixed threshold maps them directly,
    // so freeing one returns it at once.
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
    // A panic inside the object-store client is caught at the store's door and reported
    // there as an error that names the settings at fault; its own text would be noise.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !datastore::store::is_client_panic(info) {
            report(info)
        }
    }));
    let args = datastore::cli::helper_form(std::env::args_os().collect());
    let cli = datastore::cli::Cli::parse_from(args);
    let json = cli.json;
    match datastore::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", datastore::cli::error_report(&e, json));
            datastore::cli::exit_code(&e)
        }
    }
}
